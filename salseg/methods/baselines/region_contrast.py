"""Region Contrast (RC) saliency, Cheng et al.

M.-M. Cheng, G.-X. Zhang, N. J. Mitra, X. Huang, S.-M. Hu, "Global Contrast based
Salient Region Detection", CVPR 2011; extended version M.-M. Cheng, N. J. Mitra,
X. Huang, P. H. S. Torr, S.-M. Hu, IEEE TPAMI 37(3), 2015.  Section and equation
numbers below refer to the TPAMI paper unless stated otherwise.  Where the paper
leaves a detail open, the DEFAULT is what the authors' code does (Cheng's CVPR 2011
release, ``getRC(img3f, 0.4, 50, 50, 0.5)``, as ported in ``saldet/`` of
github.com/hwp/interactiveOR; ``benchmarks/compare_rc_port.py`` compares the maps).

This is a per-image CPU algorithm (numpy + scipy + scikit-image, no torch, no GPU).
It runs at the image's own size: nothing here depends on the image area.

Pipeline of :func:`region_contrast_saliency` (the public entry point):

1. Colour quantisation (Sec. 3.1): every RGB channel is quantised to ``n_levels``
   (12) values, level floor(v/255 * (n_levels - 1e-4)) as in the authors' code,
   giving at most 12^3 = 1728 colours.  The most frequent colours are kept, the
   rarest dropped as long as the dropped pixels stay under round((1 - coverage) N)
   (``coverage`` 0.95); at most ``max_colors`` (256) are kept, and if fewer than
   ``min_colors`` (10) remain, up to ``fallback_colors`` (100) are kept instead.
   A dropped colour is replaced by the kept colour nearest in quantised-RGB bin
   coordinates (``merge_colors="bins"``; ``"lab"``: nearest in L*a*b*, the paper's
   "closest colour" read in its colour space).  A colour's value is the L*a*b* of
   the mean RGB of its pixels (``color_mean="rgb"``; ``"lab"``: the mean L*a*b*).
   An image left with at most 2 colours gets an all-zero map, as in the authors'
   code.  Colour distances D(c1, c2) are Euclidean in L*a*b*.
   See :func:`quantize_colors`.
2. Regions (Sec. 3.2): graph-based segmentation of Felzenszwalb & Huttenlocher
   (IJCV 2004) on the L*a*b* image, smoothed first by a Gaussian of sigma 0.5 with
   replicated borders, k = 50, minimum region size 50 pixels: the authors' values,
   NOT scaled with the image area (``seg_ref_pixels=None``).  ``seg_ref_pixels=N``
   multiplies k and the minimum size by H*W/N, which keeps the granularity of the
   segmentation of a resized image (a departure).  SLIC superpixels are available
   as an option.  See :func:`segment`.
3. Region contrast with spatial weighting (Eq. 5 and Eq. 6):

       D_r(r1, r2) = sum_i sum_j f(c_{1,i}) f(c_{2,j}) D(c_{1,i}, c_{2,j})           (5)
       S(r_k) = w_s(r_k) sum_{r_k != r_i} exp(-D_s(r_k, r_i) / sigma_s^2)
                                          w(r_i) D_r(r_k, r_i)                          (6)

   f(c_{k,i}) is the frequency of colour i among the pixels of region k, w(r_i)
   the pixel count of region i (here normalised by the image area, which does not
   change the min-max normalised map), D_s the squared distance between region
   centroids, pixel (x, y) at (x/W, y/H) as in the authors' code, and
   sigma_s^2 = 0.4.  With the region-by-colour histogram matrix H (R x C) and the
   colour distance matrix D (C x C), Eq. 5 for all region pairs is the single
   product D_r = H D H^T.  See :func:`region_contrast`.

   w_s(r_k) is the centre-bias term that the TPAMI version adds to the CVPR 2011
   formulation (Eq. 6, w_s(r_k) = exp(-9 d_k^2), d_k the mean distance of the
   region's pixels to the image centre).  It is off by default
   (``center_prior=False``, i.e. w_s = 1), as in the authors' CVPR 2011 code.

4. The region saliencies are min-max normalised to [0, 1] (no contrast at all:
   all zero), every pixel takes its region's value, and the map is blurred by the
   3x3 Gaussian of the authors' code (cv::GaussianBlur(3x3, sigma 0) = [1 2 1]/4
   in each direction, mirrored borders), not normalised again (``blur=False``
   skips the blur).

Direction of the spatial weighting (tested): as ``sigma_s2`` grows the weight
exp(-D_s/sigma_s^2) tends to 1 for every pair and RC becomes a purely global
region contrast, in which a region's saliency does not depend on where it lies
(two regions with the same colours and size get the same value).  A small
``sigma_s2`` makes the contrast local: only nearby regions count, so a region far
from the regions it contrasts with (e.g. an object in a corner, far from the
centroid of the background) loses saliency relative to one close to them.

Histogram-based contrast (HC, Sec. 3.1, Eq. 3 with the colour-space smoothing of
Eq. 4) is also provided, :func:`histogram_contrast`, since it shares the
quantisation.

Options that depart from the authors' code (each off by default):

* ``spatial_distance="euclidean"``: D_s the plain distance, the literal reading of
  Eq. 6 (the code squares it, which makes exp(-D_s/sigma_s^2) a Gaussian).
* ``seg_ref_pixels``, ``merge_colors="lab"``, ``color_mean="lab"``, ``blur=False``,
  ``center_prior=True`` (TPAMI) and ``segmentation="slic"``, described above.

Remaining differences from the authors' code with the defaults: the L*a*b*
conversion is scikit-image's exact formula (float64), while OpenCV 4's float
conversion interpolates a lookup table (errors up to ~0.4 in L*a*b*; the OpenCV
2 of 2011 computed it directly); the F&H segmentation is sensitive enough to such
differences that some photos get other regions.  The graph segmentation is
scikit-image's, which merges on a strictly smaller edge weight (the reference
code: smaller or equal) and orders equal edge weights differently.  On the 20
SOD photos of sod300 the maps correlate with the C++ port's at mean r = 0.957
(OpenCV 4.6 L*a*b*) and r = 0.9999 when the port is given scikit-image's L*a*b*
formula (``benchmarks/compare_rc_port.py``).  The extra post-processing of the
authors' later TPAMI release (border regions, smoothing by histogram and by
region) is not part of RC as Sec. 3.2 describes it and is not implemented.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as _ndi
from skimage import color as _skcolor
from skimage import segmentation as _skseg

from salseg.maps import minmax_normalize_array

__all__ = [
    "DEFAULTS",
    "as_uint8_rgb",
    "quantize_colors",
    "segment",
    "region_statistics",
    "region_contrast",
    "region_contrast_saliency",
    "blur3",
    "histogram_contrast",
]

#: Default parameters (the authors' code).  Every key is a keyword argument of
#: :func:`region_contrast_saliency`.
DEFAULTS: dict = dict(
    sigma_s2=0.4,
    n_levels=12,
    coverage=0.95,
    segmentation="felzenszwalb",
    seg_sigma=0.5,
    seg_k=50.0,
    seg_min_size=50,
    n_segments=200,
    compactness=10.0,
    seg_colorspace="lab",
    seg_ref_pixels=None,
    spatial_distance="sqeuclidean",
    center_prior=False,
    max_colors=256,
    min_colors=10,
    fallback_colors=100,
    merge_colors="bins",
    color_mean="rgb",
    blur=True,
)

_SEGMENTATIONS = ("felzenszwalb", "slic")
_CHOICES = {
    "segmentation": _SEGMENTATIONS,
    "seg_colorspace": ("lab", "rgb"),
    "spatial_distance": ("sqeuclidean", "euclidean"),
    "merge_colors": ("bins", "lab"),
    "color_mean": ("rgb", "lab"),
}


# --------------------------------------------------------------------------- input
def as_uint8_rgb(image) -> np.ndarray:
    """Validate ``image`` and return it as a C-contiguous uint8 (H, W, 3) array.

    Accepted: uint8 or float (values in [0, 1]) arrays of shape (H, W) (grayscale,
    replicated to 3 channels), (H, W, 1) (idem), (H, W, 3) (RGB) or (H, W, 4)
    (RGBA, alpha dropped).  Anything else raises ``ValueError``.
    """
    if not isinstance(image, np.ndarray):
        try:
            image = np.asarray(image)
        except Exception as exc:  # pragma: no cover - exotic objects
            raise ValueError(
                f"expected a numpy array of shape (H, W) or (H, W, 3), got {type(image).__name__}"
            ) from exc
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(
            "expected an image of shape (H, W), (H, W, 1), (H, W, 3) (RGB) or (H, W, 4) (RGBA), "
            f"got shape {image.shape}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected an image with H >= 1 and W >= 1, got shape {image.shape}")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    elif image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)

    if image.dtype == np.uint8:
        out = image
    elif np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise ValueError("expected a float image with finite values in [0, 1], got NaN/inf")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"expected a float image with values in [0, 1], got range [{lo:.4g}, {hi:.4g}] "
                "(pass uint8 for 0..255 data)"
            )
        out = np.rint(image * 255.0).astype(np.uint8)
    else:
        raise ValueError(f"expected dtype uint8 or a float dtype with values in [0, 1], got {image.dtype}")
    return np.ascontiguousarray(out)


def _check_params(p: dict) -> None:
    if not (np.isfinite(p["sigma_s2"]) and p["sigma_s2"] > 0):
        raise ValueError(f"sigma_s2 must be a positive finite number, got {p['sigma_s2']!r}")
    if not (isinstance(p["n_levels"], (int, np.integer)) and 2 <= p["n_levels"] <= 256):
        raise ValueError(f"n_levels must be an int in [2, 256], got {p['n_levels']!r}")
    if not (0.0 < p["coverage"] <= 1.0):
        raise ValueError(f"coverage must be in (0, 1], got {p['coverage']!r}")
    for key, choices in _CHOICES.items():
        if p[key] not in choices:
            raise ValueError(f"{key} must be one of {choices}, got {p[key]!r}")
    if p["seg_sigma"] < 0 or p["seg_k"] <= 0 or p["seg_min_size"] < 1:
        raise ValueError("seg_sigma must be >= 0, seg_k > 0 and seg_min_size >= 1")
    if p["n_segments"] < 1 or p["compactness"] <= 0:
        raise ValueError("n_segments must be >= 1 and compactness > 0")
    if p["seg_ref_pixels"] is not None and p["seg_ref_pixels"] <= 0:
        raise ValueError(f"seg_ref_pixels must be positive or None (no scaling), got {p['seg_ref_pixels']!r}")
    if p["max_colors"] < 1 or p["min_colors"] < 1 or p["fallback_colors"] < 1:
        raise ValueError("max_colors, min_colors and fallback_colors must be >= 1")
    if not isinstance(p["blur"], (bool, np.bool_)):
        raise ValueError(f"blur must be true or false, got {p['blur']!r}")


# ------------------------------------------------------------------ quantisation
def quantize_colors(
    image: np.ndarray,
    n_levels: int = 12,
    coverage: float = 0.95,
    max_colors: int = 256,
    min_colors: int = 10,
    lab: np.ndarray | None = None,
    fallback_colors: int = 100,
    merge_colors: str = "bins",
    color_mean: str = "rgb",
):
    """Colour quantisation of Sec. 3.1, as the authors' code does it.

    Each RGB channel value v is quantised to level floor(v/255 * (n_levels - 1e-4)).
    The quantised colours are sorted by decreasing frequency (ties: larger bin id
    first); the rarest are dropped while the dropped pixels number fewer than
    round((1 - coverage) * N), i.e. the kept ones cover MORE than N minus that.  At
    most ``max_colors`` are kept; if fewer than ``min_colors`` remain, the
    ``fallback_colors`` most frequent are kept instead (all, if the image has fewer).
    Each dropped colour joins the kept colour nearest in quantised-RGB bin
    coordinates (``merge_colors="bins"``, ties to the more frequent) or nearest in
    L*a*b* between the mean L*a*b* of the two bins' pixels (``"lab"``).  A colour's
    value is the L*a*b* of the mean RGB of its pixels (``color_mean="rgb"``) or the
    mean L*a*b* of its pixels (``"lab"``; ``lab`` may pass the image's L*a*b*).

    Returns ``(index, colors_lab, counts)``: ``index`` (H, W) int64 colour index of
    every pixel in 0..C-1, ``colors_lab`` (C, 3) float64 L*a*b* value of each
    colour, ``counts`` (C,) int64 number of its pixels.  Colours are ordered by
    decreasing frequency of their original bin.
    """
    image = as_uint8_rgb(image)
    if merge_colors not in _CHOICES["merge_colors"] or color_mean not in _CHOICES["color_mean"]:
        raise ValueError(f"merge_colors must be one of {_CHOICES['merge_colors']} and color_mean one of "
                         f"{_CHOICES['color_mean']}, got {merge_colors!r}, {color_mean!r}")
    h, w = image.shape[:2]
    n = h * w
    rgb = image.reshape(n, 3)

    level = np.floor(np.arange(256) / 255.0 * (n_levels - 1e-4)).astype(np.int64)  # authors' code
    q = level[rgb]
    bins = (q[:, 0] * n_levels + q[:, 1]) * n_levels + q[:, 2]
    n_bins = n_levels**3
    bin_count = np.bincount(bins, minlength=n_bins)
    present = np.flatnonzero(bin_count)
    # most frequent first; equal counts: larger bin id first (the code sorts (count, bin) pairs descending)
    order = present[np.lexsort((-present, -bin_count[present]))]
    sorted_counts = bin_count[order]
    # the code drops the rarest colours while their total stays below round((1 - coverage) N): colour j is
    # kept iff the colours from j on hold at least that many pixels (and at least one colour is kept)
    max_drop = int(np.rint(n * (1.0 - coverage)))
    tail = np.cumsum(sorted_counts[::-1])[::-1]
    n_keep = max(1, int((tail >= max_drop).sum()))
    n_keep = min(n_keep, max_colors)
    if n_keep < min_colors:
        n_keep = min(order.size, fallback_colors)
    kept, dropped = order[:n_keep], order[n_keep:]

    bin_to_color = np.full(n_bins, -1, dtype=np.int64)
    bin_to_color[kept] = np.arange(n_keep)
    if dropped.size:
        if merge_colors == "bins":
            coords = np.stack([order // (n_levels * n_levels), order // n_levels % n_levels, order % n_levels], 1)
            d2 = ((coords[n_keep:, None, :] - coords[None, :n_keep, :]) ** 2).sum(-1)
        else:
            if lab is None:
                lab = _skcolor.rgb2lab(image)
            lab_flat = lab.reshape(n, 3)
            bin_lab = np.stack([np.bincount(bins, weights=lab_flat[:, c], minlength=n_bins) for c in range(3)], 1)
            bin_lab[present] /= bin_count[present, None]
            d2 = ((bin_lab[dropped, None, :] - bin_lab[None, kept, :]) ** 2).sum(-1)
        bin_to_color[dropped] = np.argmin(d2, axis=1)  # first minimum = the more frequent kept colour
    index = bin_to_color[bins]

    counts = np.bincount(index, minlength=n_keep)
    if color_mean == "rgb":
        mean_rgb = np.stack([np.bincount(index, weights=rgb[:, c] / 255.0, minlength=n_keep) for c in range(3)], 1)
        colors_lab = _skcolor.rgb2lab((mean_rgb / counts[:, None])[None])[0]
    else:
        if lab is None:
            lab = _skcolor.rgb2lab(image)
        lab_flat = lab.reshape(n, 3)
        colors_lab = np.stack([np.bincount(index, weights=lab_flat[:, c], minlength=n_keep) for c in range(3)], 1)
        colors_lab /= counts[:, None]
    return index.reshape(h, w), colors_lab, counts


def color_distance_matrix(colors_lab: np.ndarray) -> np.ndarray:
    """(C, C) Euclidean distances between L*a*b* colours, D(c1, c2) of Sec. 3.1."""
    diff = colors_lab[:, None, :] - colors_lab[None, :, :]
    return np.sqrt((diff**2).sum(-1))


# ------------------------------------------------------------------ segmentation
def segment(
    image: np.ndarray,
    segmentation: str = "felzenszwalb",
    seg_sigma: float = 0.5,
    seg_k: float = 50.0,
    seg_min_size: int = 50,
    n_segments: int = 200,
    compactness: float = 10.0,
    seg_colorspace: str = "lab",
    seg_ref_pixels: int | None = None,
    lab: np.ndarray | None = None,
) -> np.ndarray:
    """Over-segment ``image`` into regions; returns (H, W) int64 labels 0..R-1.

    ``felzenszwalb`` (default, the paper's choice): graph-based segmentation, as in
    the authors' code, of the L*a*b* image (``seg_colorspace="lab"``, k in L*a*b*
    units; "rgb": 0..255 RGB units) smoothed by a Gaussian of std ``seg_sigma``
    (radius round(4 sigma), replicated borders, like cv::GaussianBlur with
    BORDER_REPLICATE), threshold constant ``seg_k``, minimum region size
    ``seg_min_size``.  k and the minimum size are the authors' absolute values
    whatever the image size; with ``seg_ref_pixels`` set they are multiplied by
    (H*W / seg_ref_pixels), since the threshold k/|C| of F&H compares with
    component sizes, which grow with the image area (a departure, for resized
    inputs).

    ``slic``: SLIC superpixels (skimage, computed in L*a*b*) with ``n_segments`` and
    ``compactness``.
    """
    image = as_uint8_rgb(image)
    h, w = image.shape[:2]
    if segmentation == "felzenszwalb":
        scale = 1.0 if seg_ref_pixels is None else (h * w) / float(seg_ref_pixels)
        k = float(seg_k) * scale
        min_size = max(1, int(round(seg_min_size * scale)))
        if seg_colorspace == "lab":
            if lab is None:
                lab = _skcolor.rgb2lab(image)
            # skimage divides `scale` by 255 (its reference is 0..255 data), so lab / 255 makes k act in Lab units
            feats = np.asarray(lab, dtype=np.float64) / 255.0
        else:
            feats = image / 255.0  # k in 0..255 RGB units, as skimage treats uint8 input
        if seg_sigma > 0:
            # smoothed here rather than by skimage, whose borders are reflected (the authors' are replicated)
            feats = _ndi.gaussian_filter(feats, sigma=(seg_sigma, seg_sigma, 0), mode="nearest", truncate=4.0)
        labels = _skseg.felzenszwalb(feats, scale=k, sigma=0.0, min_size=min_size)
    elif segmentation == "slic":
        labels = _skseg.slic(
            image, n_segments=int(n_segments), compactness=float(compactness), start_label=0
        )
    else:
        raise ValueError(f"segmentation must be one of {_SEGMENTATIONS}, got {segmentation!r}")
    # make labels consecutive 0..R-1
    _, labels = np.unique(labels.ravel(), return_inverse=True)
    return labels.reshape(h, w).astype(np.int64)


# ------------------------------------------------------------- region contrast
def region_statistics(labels: np.ndarray, color_index: np.ndarray, n_colors: int):
    """Per-region statistics used by Eq. 5/6.

    Returns ``(hist, counts, centroids, center_dist)``: ``hist`` (R, C) colour
    frequencies f(c_{k,i}) (rows sum to 1), ``counts`` (R,) pixel counts,
    ``centroids`` (R, 2) (y, x), pixel (x, y) at ((x + 0.5)/W, (y + 0.5)/H): the
    authors' code divides by W and H (not W - 1, H - 1), and the half-pixel shift,
    which leaves every distance between centroids unchanged, centres the
    coordinates; ``center_dist`` (R,) mean distance of the region's pixels to the
    image centre (same coordinates; used only by the optional centre prior).
    """
    h, w = labels.shape
    lab_flat = labels.ravel()
    n_regions = int(lab_flat.max()) + 1
    hist = np.bincount(
        lab_flat * n_colors + color_index.ravel(), minlength=n_regions * n_colors
    ).reshape(n_regions, n_colors).astype(np.float64)
    counts = hist.sum(1)
    hist /= counts[:, None]

    ys = (np.arange(h, dtype=np.float64) + 0.5) / h
    xs = (np.arange(w, dtype=np.float64) + 0.5) / w
    yy = np.broadcast_to(ys[:, None], (h, w)).ravel()
    xx = np.broadcast_to(xs[None, :], (h, w)).ravel()
    cy = np.bincount(lab_flat, weights=yy, minlength=n_regions) / counts
    cx = np.bincount(lab_flat, weights=xx, minlength=n_regions) / counts
    centroids = np.stack([cy, cx], 1)
    dc = np.sqrt((yy - 0.5) ** 2 + (xx - 0.5) ** 2)
    center_dist = np.bincount(lab_flat, weights=dc, minlength=n_regions) / counts
    return hist, counts.astype(np.int64), centroids, center_dist


def region_contrast(
    hist: np.ndarray,
    color_dist: np.ndarray,
    weights: np.ndarray,
    centroids: np.ndarray,
    sigma_s2: float = 0.4,
    spatial_distance: str = "sqeuclidean",
    center_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Spatially weighted region contrast, Eq. 5 and Eq. 6, vectorised.

    hist (R, C): colour frequencies per region; color_dist (C, C): D(c_i, c_j);
    weights (R,): w(r_i); centroids (R, d): region centroids in normalised
    coordinates; center_weights (R,) or None: w_s(r_k) (None = 1).
    Returns the (R,) unnormalised saliency S(r_k).
    """
    hist = np.asarray(hist, dtype=np.float64)
    # Eq. 5 for every region pair at once: D_r = H D H^T  (R x R)
    d_r = hist @ np.asarray(color_dist, dtype=np.float64) @ hist.T
    diff = centroids[:, None, :] - centroids[None, :, :]
    d_s = (diff**2).sum(-1)
    if spatial_distance == "euclidean":
        d_s = np.sqrt(d_s)
    elif spatial_distance != "sqeuclidean":
        raise ValueError(f"spatial_distance must be 'sqeuclidean' or 'euclidean', got {spatial_distance!r}")
    # Eq. 6: exp(-D_s/sigma_s^2) w(r_i) D_r(r_k, r_i), summed over i != k.
    a = np.exp(-d_s / float(sigma_s2)) * np.asarray(weights, dtype=np.float64)[None, :]
    np.fill_diagonal(a, 0.0)  # i != k (D_r(r_k, r_k) > 0 for multi-colour regions)
    sal = (a * d_r).sum(1)
    if center_weights is not None:
        sal = sal * center_weights
    return sal


def blur3(sal: np.ndarray) -> np.ndarray:
    """The final smoothing of the authors' code, cv::GaussianBlur(sal, sal, Size(3, 3), 0).

    For a 3-tap kernel with sigma 0 OpenCV uses its fixed kernel [1/4, 1/2, 1/4]
    in each direction, and its default border BORDER_REFLECT_101 mirrors about the
    edge pixel (scipy's "mirror").  float32 in, float32 out.
    """
    k = np.array([0.25, 0.5, 0.25])
    out = _ndi.correlate1d(np.asarray(sal, dtype=np.float64), k, axis=0, mode="mirror")
    return _ndi.correlate1d(out, k, axis=1, mode="mirror").astype(np.float32)


def region_contrast_saliency(image, *, return_regions: bool = False, **params):
    """Region Contrast saliency map of one image, at the image's own size.

    ``image``: uint8 RGB (H, W, 3) (grayscale / RGBA / float in [0, 1] accepted,
    see :func:`as_uint8_rgb`).  Keyword parameters (defaults in :data:`DEFAULTS`,
    the authors' code): ``sigma_s2=0.4, n_levels=12, coverage=0.95,
    segmentation="felzenszwalb", seg_sigma=0.5, seg_k=50, seg_min_size=50,
    n_segments=200, compactness=10``, plus ``seg_colorspace, seg_ref_pixels,
    spatial_distance, center_prior, max_colors, min_colors, fallback_colors,
    merge_colors, color_mean, blur`` (see the module docstring).

    Returns float32 (H, W) saliency in [0, 1]: region saliencies min-max
    normalised, then (``blur``) the 3x3 Gaussian of :func:`blur3`, so the maximum
    may fall slightly below 1.  With ``return_regions=True`` returns
    ``(saliency, labels)``.
    """
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown parameter(s) {sorted(unknown)}; expected a subset of {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    _check_params(p)
    img = as_uint8_rgb(image)
    lab = _skcolor.rgb2lab(img)

    color_index, colors_lab, _ = quantize_colors(
        img, p["n_levels"], p["coverage"], p["max_colors"], p["min_colors"], lab=lab,
        fallback_colors=p["fallback_colors"], merge_colors=p["merge_colors"], color_mean=p["color_mean"],
    )
    labels = segment(
        img,
        p["segmentation"],
        p["seg_sigma"],
        p["seg_k"],
        p["seg_min_size"],
        p["n_segments"],
        p["compactness"],
        p["seg_colorspace"],
        p["seg_ref_pixels"],
        lab=lab,
    )
    if colors_lab.shape[0] <= 2:  # the authors' code returns an all-zero map for <= 2 colours
        sal = np.zeros(img.shape[:2], np.float32)
        return (sal, labels) if return_regions else sal
    hist, counts, centroids, center_dist = region_statistics(labels, color_index, colors_lab.shape[0])
    weights = counts / float(labels.size)
    center_w = np.exp(-9.0 * center_dist**2) if p["center_prior"] else None
    reg_sal = region_contrast(
        hist,
        color_distance_matrix(colors_lab),
        weights,
        centroids,
        p["sigma_s2"],
        p["spatial_distance"],
        center_w,
    )
    sal = minmax_normalize_array(reg_sal).astype(np.float32)[labels]
    if p["blur"]:
        sal = blur3(sal)
    return (sal, labels) if return_regions else sal


# ------------------------------------------------------------ histogram contrast
def histogram_contrast(
    image,
    n_levels: int = 12,
    coverage: float = 0.95,
    smooth: bool = True,
    max_colors: int = 256,
    min_colors: int = 10,
) -> np.ndarray:
    """Histogram-based contrast (HC), Sec. 3.1, float32 (H, W) in [0, 1].

    S(c_l) = sum_j f_j D(c_l, c_j) (Eq. 3) over the quantised colours.  With
    ``smooth`` the colour-space smoothing of Eq. 4 is applied: with m = n/4 nearest
    colours (n kept colours, the colour itself included) and T = sum of the
    distances to them, S'(c) = 1/((m-1)T) sum_i (T - D(c, c_i)) S(c_i).
    """
    img = as_uint8_rgb(image)
    idx, colors_lab, counts = quantize_colors(img, n_levels, coverage, max_colors, min_colors)
    dist = color_distance_matrix(colors_lab)
    freq = counts / counts.sum()
    sal = dist @ freq  # Eq. 3
    n = sal.size
    m = int(round(n / 4.0))
    if smooth and m > 1:
        nn = np.argsort(dist, axis=1, kind="stable")[:, :m]  # includes the colour itself
        dnn = np.take_along_axis(dist, nn, axis=1)
        t = dnn.sum(1, keepdims=True)
        ok = t[:, 0] > 0
        smoothed = sal.copy()
        wgt = (t - dnn)[ok] / ((m - 1) * t[ok])
        smoothed[ok] = (wgt * sal[nn[ok]]).sum(1)
        sal = smoothed
    return minmax_normalize_array(sal).astype(np.float32)[idx]
