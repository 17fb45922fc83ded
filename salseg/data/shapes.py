"""``shapes``: the embedded, procedurally generated dataset (no download, no disk).

Every sample is a pure function of ``(seed, index)``: :func:`render_shapes` draws everything from
``numpy.random.default_rng([seed, index])``. Splits use disjoint index ranges (train from 0, val from 1,000,000,
test from 2,000,000), so the three never share an image and a sample's name ``shapes_<global index>`` is unique.

An image holds 1..``max_objects`` objects of K classes (default K = 4: disc, square, triangle, cross; up to 8 with
star, ring, hexagon, crescent), each at a random position, rotation and size (log-uniform radius between
``min_radius`` and ``max_radius`` of the image side, so small objects are common), painted with a shaded,
textured colour. Backgrounds are cluttered on purpose, so saliency methods differ:

* a two-colour gradient plus low-frequency colour noise and a texture (pixel noise, stripes or blotches);
* distractors that are NOT objects (not in the masks): thin strokes, elongated ellipses and organic blobs, often
  as contrasted as the objects;
* with probability ``camouflage`` an object's colour is taken close to the background under it;
* a final blur / sensor noise.

Targets: ``mask`` (all objects), ``class_mask`` (0 background, c + 1 for class c, the top-most object wins),
``labels`` (multi-hot of the classes visible in ``class_mask``) and ``label`` (the class of the object with the
largest VISIBLE area, ties to the first drawn). :meth:`ShapesDataset.objects` gives the per-object record.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .transforms import JointTransform

SHAPE_NAMES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "star", "ring", "hexagon", "crescent")
SPLIT_OFFSETS = {"train": 0, "val": 1_000_000, "test": 2_000_000}
MAX_SPLIT_SIZE = 1_000_000
_SQRT3 = np.float32(np.sqrt(3.0))


@functools.lru_cache(maxsize=8)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.meshgrid(np.arange(n, dtype=np.float32) + 0.5, np.arange(n, dtype=np.float32) + 0.5, indexing="ij")
    ys.setflags(write=False)
    xs.setflags(write=False)
    return ys, xs


@functools.lru_cache(maxsize=64)
def _interp_taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear-interpolation taps (i0, i1, frac) that upsample a length-n_in signal to n_out samples."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) / n_out * (n_in - 1)
    i0 = np.clip(np.floor(pos).astype(np.intp), 0, max(n_in - 2, 0))
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = (pos - i0).astype(np.float32)
    for a in (i0, i1, f):
        a.setflags(write=False)
    return i0, i1, f


def _smooth_noise(rng: np.random.Generator, n: int, cells: int, channels: int) -> np.ndarray:
    """(n, n, channels) smooth noise in about [-1, 1]: a (cells x cells) random grid, bilinearly upsampled.

    Gather + lerp only (no BLAS call: a BLAS thread pool spinning next to torch's on 2 cores costs 10x)."""
    g = rng.uniform(-1.0, 1.0, size=(cells, cells, channels)).astype(np.float32)
    i0, i1, f = _interp_taps(n, cells)
    rows = g[i0] * (1 - f)[:, None, None] + g[i1] * f[:, None, None]  # (n, cells, C)
    return rows[:, i0] * (1 - f)[None, :, None] + rows[:, i1] * f[None, :, None]


def _shape_inside(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of the unit-size shape ``cls`` at local coordinates (u, v) (the shape fits the unit disc)."""
    name = SHAPE_NAMES[cls]
    if name == "disc":
        return u * u + v * v <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.78
    if name == "triangle":
        return (v >= -0.5) & (_SQRT3 * u + v <= 1.0) & (-_SQRT3 * u + v <= 1.0)
    if name == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    rho = np.sqrt(u * u + v * v)
    if name == "ring":
        return (rho <= 1.0) & (rho >= 0.55)
    if name == "star":
        theta = np.arctan2(v, u)
        w = np.abs(((theta * (5.0 / (2 * np.pi))) % 1.0) - 0.5) * 2.0  # 1 at the tips, 0 between them
        return rho <= 0.4 + 0.6 * w**1.5
    if name == "hexagon":
        au = np.abs(u)
        return (np.abs(v) <= 0.85) & (0.5 * np.abs(v) + 0.866 * au <= 0.85)
    if name == "crescent":
        return (rho <= 1.0) & ((u - 0.45) ** 2 + v * v > 0.64)
    raise ValueError(cls)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=3).astype(np.float32)


def render_shapes(
    seed: int,
    index: int,
    *,
    image_size: int = 128,
    num_classes: int = 4,
    min_objects: int = 1,
    max_objects: int = 3,
    min_radius: float = 0.05,
    max_radius: float = 0.28,
    camouflage: float = 0.3,
    clutter: float = 1.0,
) -> dict[str, Any]:
    """Render one sample: ``image`` uint8 (S,S,3), ``class_mask`` int64 (S,S) and ``objects`` (list of dicts)."""
    rng = np.random.default_rng([int(seed), int(index)])
    n = int(image_size)
    ys, xs = _grid(n)

    # ---------------------------------------------------------------- background
    c1, c2 = _random_colour(rng), _random_colour(rng)
    ang = rng.uniform(0, 2 * np.pi)
    t = (xs * float(np.cos(ang)) + ys * float(np.sin(ang))) / n
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c1[None, None, :] + (c2 - c1)[None, None, :] * t[:, :, None]
    img += rng.uniform(0.05, 0.3) * _smooth_noise(rng, n, int(rng.integers(3, 9)), 3)
    texture = int(rng.integers(0, 3))
    if texture == 0:  # fine pixel noise
        img += rng.uniform(0.02, 0.1) * rng.standard_normal((n, n, 1), dtype=np.float32)
    elif texture == 1:  # stripes
        a2 = rng.uniform(0, np.pi)
        freq = rng.uniform(0.15, 0.8)
        stripes = np.sin((xs * float(np.cos(a2)) + ys * float(np.sin(a2))) * freq + rng.uniform(0, 2 * np.pi))
        img += (rng.uniform(0.04, 0.18) * stripes)[:, :, None] * rng.uniform(0.3, 1.0, size=3).astype(np.float32)
    else:  # blotches
        img += rng.uniform(0.05, 0.2) * _smooth_noise(rng, n, int(rng.integers(12, 24)), 3)

    # ---------------------------------------------------------------- distractors (not objects)
    n_strokes = int(rng.integers(0, int(round(6 * clutter)) + 1))
    for _ in range(n_strokes):
        p0 = rng.uniform(0, n, size=2)
        a = rng.uniform(0, 2 * np.pi)
        p1 = p0 + rng.uniform(0.15, 0.7) * n * np.array([np.cos(a), np.sin(a)])
        half = rng.uniform(0.5, 2.5)
        (x0, y0), (dx, dy) = p0.tolist(), (p1 - p0).tolist()
        L2 = dx * dx + dy * dy + 1e-6
        # only the stroke's bounding box
        r0, r1 = max(0, int(min(y0, y0 + dy) - half) - 1), min(n, int(max(y0, y0 + dy) + half) + 2)
        q0, q1 = max(0, int(min(x0, x0 + dx) - half) - 1), min(n, int(max(x0, x0 + dx) + half) + 2)
        if r0 >= r1 or q0 >= q1:
            rng.uniform(size=3)  # keep the random stream independent of the geometry
            continue
        bx, by = xs[r0:r1, q0:q1] - x0, ys[r0:r1, q0:q1] - y0
        s = np.clip((bx * dx + by * dy) / L2, 0, 1)
        on = (bx - s * dx) ** 2 + (by - s * dy) ** 2 <= half * half
        img[r0:r1, q0:q1][on] = _random_colour(rng)
    n_ell = int(rng.integers(0, int(round(3 * clutter)) + 1))
    for _ in range(n_ell):
        cx, cy = rng.uniform(0, n, size=2).tolist()
        a_ax = rng.uniform(0.06, 0.25) * n
        b_ax = a_ax / rng.uniform(2.2, 4.0)  # clearly elongated, never disc-like
        th = rng.uniform(0, np.pi)
        ct, st = float(np.cos(th)), float(np.sin(th))
        r0, r1, q0, q1 = max(0, int(cy - a_ax) - 1), min(n, int(cy + a_ax) + 2), max(0, int(cx - a_ax) - 1), min(
            n, int(cx + a_ax) + 2)
        du, dv = xs[r0:r1, q0:q1] - cx, ys[r0:r1, q0:q1] - cy
        u = (du * ct + dv * st) / a_ax
        v = (-du * st + dv * ct) / b_ax
        img[r0:r1, q0:q1][u * u + v * v <= 1.0] = _random_colour(rng)
    if rng.uniform() < 0.7 * clutter:
        field = _smooth_noise(rng, n, int(rng.integers(5, 10)), 1)[:, :, 0]
        blob = field > np.quantile(field, 1.0 - rng.uniform(0.03, 0.12))
        img[blob] = (_random_colour(rng) + 0.1 * _smooth_noise(rng, n, 6, 3)[blob]).astype(np.float32)
    np.clip(img, 0.0, 1.0, out=img)

    # ---------------------------------------------------------------- objects
    class_mask = np.zeros((n, n), dtype=np.int64)
    owner = np.full((n, n), -1, dtype=np.int64)
    n_obj = int(rng.integers(min_objects, max_objects + 1))
    objects: list[dict[str, Any]] = []
    lo = np.log(max(min_radius * n, 2.5))  # at least a few pixels, even for tiny images
    hi = max(np.log(max_radius * n), lo)
    for _ in range(n_obj):
        cls = int(rng.integers(0, num_classes))
        best = None
        for _attempt in range(8):  # limit occlusion of earlier objects
            r = float(np.exp(rng.uniform(lo, hi)))
            cx, cy = rng.uniform(0.5 * r, n - 0.5 * r, size=2).tolist()
            rot = rng.uniform(0, 2 * np.pi)
            y0, y1 = max(0, int(cy - r) - 1), min(n, int(cy + r) + 2)
            x0, x1 = max(0, int(cx - r) - 1), min(n, int(cx + r) + 2)
            du, dv = xs[y0:y1, x0:x1] - cx, ys[y0:y1, x0:x1] - cy
            cr, sr = float(np.cos(rot)), float(np.sin(rot))
            inside = _shape_inside(cls, (du * cr + dv * sr) / r, (-du * sr + dv * cr) / r)
            area = int(inside.sum())
            if area < 4:
                continue
            covered = int((owner[y0:y1, x0:x1][inside] >= 0).sum())
            cand = (covered / area, r, cx, cy, rot, (y0, y1, x0, x1), inside)
            if best is None or cand[0] < best[0]:
                best = cand
            if cand[0] <= 0.25:
                break
        if best is None:
            continue
        _, r, cx, cy, rot, (y0, y1, x0, x1), inside = best
        camo = bool(rng.uniform() < camouflage)
        if camo:  # colour close to the background under the object
            base = img[y0:y1, x0:x1][inside].mean(axis=0) + rng.uniform(-0.12, 0.12, size=3).astype(np.float32)
            base = np.clip(base, 0, 1).astype(np.float32)
        else:
            base = _random_colour(rng)
        # shading: a linear gradient across the object plus a little texture
        sh_ang = rng.uniform(0, 2 * np.pi)
        cs, ss = float(np.cos(sh_ang)), float(np.sin(sh_ang))
        shade = ((xs[y0:y1, x0:x1] - cx) * cs + (ys[y0:y1, x0:x1] - cy) * ss) / r
        col = base[None, :] + (rng.uniform(0.0, 0.15) * shade[inside])[:, None]
        col = col + rng.uniform(0.0, 0.05) * rng.standard_normal(col.shape, dtype=np.float32)
        img[y0:y1, x0:x1][inside] = np.clip(col, 0, 1)
        class_mask[y0:y1, x0:x1][inside] = cls + 1
        owner[y0:y1, x0:x1][inside] = len(objects)
        objects.append({"class": cls, "shape": SHAPE_NAMES[cls], "center": (float(cx), float(cy)), "radius": r,
                        "rotation": float(rot), "camouflaged": camo})

    # ---------------------------------------------------------------- sensor: blur + noise
    if rng.uniform() < 0.5:
        k = np.array([0.25, 0.5, 0.25], dtype=np.float32)
        pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
        img = k[0] * pad[:-2] + k[1] * pad[1:-1] + k[2] * pad[2:]
        img = k[0] * img[:, :-2] + k[1] * img[:, 1:-1] + k[2] * img[:, 2:]
    img = img + rng.uniform(0.0, 0.03) * rng.standard_normal(img.shape, dtype=np.float32)
    image = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    areas = np.bincount(owner.ravel() + 1, minlength=len(objects) + 1)[1:]
    for j, o in enumerate(objects):
        o["area"] = int(areas[j])
    return {"image": image, "class_mask": class_mask, "objects": objects}


def _targets(class_mask: np.ndarray, objects: list[dict], num_classes: int) -> tuple[int, np.ndarray]:
    labels = (np.bincount(class_mask.ravel(), minlength=num_classes + 1)[1 : num_classes + 1] > 0).astype(np.float32)
    areas = [o["area"] for o in objects]
    label = int(objects[int(np.argmax(areas))]["class"]) if objects and max(areas) > 0 else 0
    return label, labels


class ShapesDataset(Dataset):
    """The procedurally generated ``shapes`` split (see the module docstring).

    Args:
        split: ``train`` / ``val`` / ``test`` (disjoint index ranges).
        size: number of samples (any size costs no disk).
        num_classes: K in 1..8.
        image_size: native side of the generated images (``gt`` is at this size).
        seed: generation seed.
        max_objects / min_objects: objects per image.
        min_radius / max_radius: object radius range as a fraction of the image side (log-uniform).
        camouflage: probability that an object takes the background's colour (plus a small offset).
        clutter: scales the number of distractors (0 = clean backgrounds, still textured).
        transform: a :class:`JointTransform`; None = resize-free eval (tensors at native size).
        with_gt: add ``gt`` (uint8 (S,S) = mask * 255 at native size) and ``gt_class`` (uint8 (S,S), the class
            mask at native size), for eval splits.
        distortion: an optional test-time ``Distortion`` of the generated image at native size, before the
            transform.
        name: the ``dataset`` string of the samples.
        cache: keep each rendered sample (8-bit image, 8-bit class mask: about 65 KB at 128 px) in memory after
            its first use, so later epochs only pay for the transform. Rendering is most of a sample's cost
            (about 4 of 5 ms at 128 px), and on a CPU run it competes with the training threads. The cache lives
            in the process that reads (a persistent DataLoader worker keeps it across epochs). Samples are
            identical with and without it.
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 1000,
        num_classes: int = 4,
        image_size: int = 128,
        seed: int = 0,
        max_objects: int = 3,
        min_objects: int = 1,
        min_radius: float = 0.05,
        max_radius: float = 0.28,
        camouflage: float = 0.3,
        clutter: float = 1.0,
        transform: JointTransform | None = None,
        with_gt: bool = False,
        distortion=None,
        name: str = "shapes",
        cache: bool = False,
    ):
        if split not in SPLIT_OFFSETS:
            raise ValueError(f"shapes: unknown split {split!r}; known: {list(SPLIT_OFFSETS)}")
        if not 0 <= int(size) <= MAX_SPLIT_SIZE:
            raise ValueError(f"shapes: size must be in 0..{MAX_SPLIT_SIZE}, got {size}")
        if not 1 <= int(num_classes) <= len(SHAPE_NAMES):
            raise ValueError(f"shapes: num_classes must be in 1..{len(SHAPE_NAMES)}, got {num_classes}")
        if not 1 <= int(min_objects) <= int(max_objects):
            raise ValueError(f"shapes: need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
        if int(image_size) < 16:
            raise ValueError(f"shapes: image_size must be >= 16, got {image_size}")
        if not 0 < float(min_radius) <= float(max_radius) <= 0.5:
            raise ValueError(f"shapes: need 0 < min_radius <= max_radius <= 0.5, got {min_radius}, {max_radius}")
        self.split = split
        self.size = int(size)
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.offset = SPLIT_OFFSETS[split]
        self.class_names = list(SHAPE_NAMES[: self.num_classes])
        self.render_kwargs = dict(
            image_size=self.image_size,
            num_classes=self.num_classes,
            min_objects=int(min_objects),
            max_objects=int(max_objects),
            min_radius=float(min_radius),
            max_radius=float(max_radius),
            camouflage=float(camouflage),
            clutter=float(clutter),
        )
        self.transform = transform if transform is not None else JointTransform(self.image_size, train=False)
        self.with_gt = bool(with_gt)
        self.distortion = distortion
        self.name = name
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, list]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.size

    @property
    def names(self) -> list[str]:
        """The sample names in index order (as VOC's and COCO's ``names``), without rendering anything."""
        return [f"shapes_{self.offset + i:06d}" for i in range(self.size)]

    def identity_sources(self) -> list[tuple[str, None]]:
        """Procedural: (seed, global index, rendering settings) determine the pixels, so they are the identity
        the train / test overlap check compares (``overlap.py``); nothing is rendered for it."""
        settings = ",".join(f"{k}={v}" for k, v in sorted(self.render_kwargs.items()))
        return [(f"{self.seed}:{self._index(i)}:{settings}", None) for i in range(len(self))]

    def _index(self, index: int) -> int:
        if not -self.size <= index < self.size:
            raise IndexError(f"shapes {self.split}: index {index} out of range for size {self.size}")
        return self.offset + (index % self.size)

    def render(self, index: int) -> dict[str, Any]:
        """The raw sample (numpy, native size) for ``index`` of this split."""
        return render_shapes(self.seed, self._index(index), **self.render_kwargs)

    def objects(self, index: int) -> list[dict[str, Any]]:
        """Per-object records (class, shape, center, radius, rotation, visible area) of sample ``index``."""
        return self.render(index)["objects"]

    def _raw(self, gi: int) -> tuple[np.ndarray, np.ndarray, list]:
        """(image uint8, class mask, objects) of global index ``gi``, from the cache when it is on."""
        if self._cache is not None and gi in self._cache:
            return self._cache[gi]
        raw = render_shapes(self.seed, gi, **self.render_kwargs)
        item = (raw["image"], raw["class_mask"], raw["objects"])
        if self._cache is not None:  # class ids are < 9: uint8 is exact and 8x smaller than int64
            item = (raw["image"], raw["class_mask"].astype(np.uint8), raw["objects"])
            self._cache[gi] = item
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        gi = self._index(index)
        image, cm, objects = self._raw(gi)
        label, labels = _targets(cm, objects, self.num_classes)
        if self.distortion is not None:  # the generated image itself, before any resize (distortions.py)
            image = self.distortion.native(image, index)
        out = self.transform(image, (cm > 0).astype(np.uint8), cm)
        image = out["image"]
        sample: dict[str, Any] = {
            "image": image,
            "mask": out["mask"],
            "name": f"shapes_{gi:06d}",
            "dataset": self.name,
            "label": torch.tensor(label, dtype=torch.int64),
            "labels": torch.from_numpy(labels),
            "class_mask": out["class_mask"],
        }
        if self.with_gt:
            sample["gt"] = torch.from_numpy((cm > 0).astype(np.uint8) * np.uint8(255))
            sample["gt_class"] = torch.from_numpy(np.ascontiguousarray(cm, dtype=np.uint8))  # for mIoU (DCSP)
        return sample


def build_shapes(
    ctx,
    split: str = "train",
    size: int | None = None,
    num_classes: int = 4,
    image_size: int = 128,
    seed: int = 0,
    max_objects: int = 3,
    min_objects: int = 1,
    min_radius: float = 0.05,
    max_radius: float = 0.28,
    camouflage: float = 0.3,
    clutter: float = 1.0,
    cache: bool = False,
) -> ShapesDataset:
    """The embedded ``shapes`` dataset. ``image_size`` is the NATIVE generation size (gt size); the module's
    ``image_size`` is the network input. ``size`` defaults to 1000 / 100 / 200 for train / val / test.
    ``seed`` is the generation seed (independent of the run seed, so the test images never move).
    ``cache``: keep rendered samples in memory after first use (see :class:`ShapesDataset`)."""
    if size is None:
        size = {"train": 1000, "val": 100, "test": 200}.get(split, 200)
    return ShapesDataset(
        split=split,
        size=size,
        num_classes=num_classes,
        image_size=image_size,
        seed=seed,
        max_objects=max_objects,
        min_objects=min_objects,
        min_radius=min_radius,
        max_radius=max_radius,
        camouflage=camouflage,
        clutter=clutter,
        transform=ctx.transform(),
        with_gt=ctx.with_gt,
        distortion=ctx.distortion(),
        name=ctx.dataset,
        cache=bool(cache),
    )
