"""Reading images and masks from disk, pairing them by file stem, and the data errors.

Decoding is done with Pillow and never tolerates truncated files: ``ImageFile.LOAD_TRUNCATED_IMAGES`` is forced to
``False`` while a file is decoded, so a broken download fails loudly (naming the file) instead of training on grey
padding.

Image modes handled by :func:`read_image` (always returns ``uint8 (H, W, 3)``):
    RGB as is; L / 1 / P / CMYK / YCbCr / LAB / HSV converted to RGB; RGBA / LA / PA drop the alpha channel (no
    compositing); 16-bit (I;16*, I) and 32-bit float (F) are rescaled to 8 bit (65535 -> 255, F in [0,1] -> 255).
    EXIF orientation is deliberately NOT applied: SOD masks are drawn on the stored pixel grid.

One grey reading for every mask and map (:func:`gray_like_opencv`): training (:func:`read_mask`), the test-time
ground truth and ``salseg eval`` (``salseg.evaluate`` reads GT with :func:`read_mask` and maps with
:func:`read_gray`) all decode to grey like ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``, the reading of PySODMetrics
and most Python SOD evaluation scripts, so a coloured mask reads the same level everywhere:
    L as is; 1 -> {0, 255}; LA -> its L channel; RGB(A), palette and other colour modes: alpha dropped, luminance as
    OpenCV computes it for that format: PNG through libpng ``(9797 R + 19234 G + 3737 B) >> 15``, JPEG the
    decoder's own Y channel, other formats OpenCV's ``(4899 R + 9617 G + 1868 B + 8192) >> 14`` (checked against
    opencv-python 4.14; PIL's ``convert("L")`` differs by one level on about half of the coloured pixels); 16-bit
    -> the high byte (``v >> 8``); F in [0, 1] kept as a float map.

:func:`read_mask` (always ``uint8 (H, W)`` raw values 0..255, never binarised here) adds the conventions of a
mask on top: RGBA / LA / PA whose colour is constant while the alpha varies (an alpha matte) -> the alpha; F in
[0, 1] -> x255; a mask whose only values are {0, 1} (a 0/1-coded binary mask) is scaled to {0, 255} so that the
metrics' ``gt > 128`` sees the object. VOC-style coloured class palettes are NOT SOD masks and give the colour's
luminance, not the index.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from ..errors import SalsegError

IMAGE_EXTS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_EXTS: tuple[str, ...] = (".png", ".bmp", ".tif", ".tiff", ".gif")


class DataError(SalsegError, ValueError):
    """A data set on disk is not what the loader expects (unpaired file, size mismatch, bad split...)."""


class CorruptFileError(DataError):
    """A file cannot be decoded (truncated, not an image, unsupported mode)."""


class SizeMismatchError(DataError):
    """An image and its mask do not have the same size."""


class UnpairedFileError(DataError):
    """An image without a mask, or a mask without an image."""


class MissingDataError(DataError, FileNotFoundError):
    """A dataset folder (or one of its sub-folders) does not exist."""


@dataclass(frozen=True)
class Pair:
    """One image/mask pair, matched by file stem."""

    stem: str
    image: Path
    mask: Path


@contextlib.contextmanager
def _strict_truncation():
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def _open(path: str | Path, gray: bool = False) -> Image.Image:
    """Open and fully decode ``path``; any decoding problem becomes a :class:`CorruptFileError` naming the file.

    ``gray``: a colour JPEG is decoded straight to its Y channel, as libjpeg does for OpenCV's grey reading.
    The copy keeps the file's ``format`` (the grey conversion depends on it).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"file not found: {path}")
    try:
        with _strict_truncation(), Image.open(path) as im:
            if gray and im.format == "JPEG" and im.mode != "L":
                im.draft("L", im.size)
            im.load()
            decoded = im.copy()  # the decoded pixels outlive the file handle
            decoded.format = im.format
            return decoded
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptFileError(f"cannot decode {path}: {type(e).__name__}: {e}") from e


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptFileError(f"cannot read the header of {path}: {type(e).__name__}: {e}") from e


def _high_bit_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    if mode == "F":
        a = arr.astype(np.float64)
        if a.size and np.nanmax(a) <= 1.0:
            a = a * 255.0
        return np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
    # 16-bit (I;16, I;16B, I;16L) and PNG 16-bit loaded as I: full scale is 65535
    a = arr.astype(np.float64)
    return np.clip(a / 257.0, 0, 255).round().astype(np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to ``uint8 (H, W, 3)`` RGB (see the module docstring for modes)."""
    im = _open(path)
    mode = im.mode
    if mode == "RGB":
        arr = np.asarray(im, dtype=np.uint8)
    elif mode.startswith("I") or mode == "F":
        g = _high_bit_to_uint8(np.asarray(im), "F" if mode == "F" else "I")
        arr = np.repeat(g[:, :, None], 3, axis=2)
    elif mode in ("RGBA", "RGBa", "RGBX"):
        arr = np.asarray(im, dtype=np.uint8)[:, :, :3]
    elif mode == "P" and "transparency" in im.info:
        arr = np.asarray(im.convert("RGBA"), dtype=np.uint8)[:, :, :3]
    else:
        try:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (ValueError, OSError) as e:
            raise CorruptFileError(f"unsupported image mode {mode!r} in {path}") from e
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return arr if arr.flags.writeable else arr.copy()


def _luminance(rgb: np.ndarray, image_format: str | None) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    if image_format == "PNG":  # libpng png_set_rgb_to_gray(0.299, 0.587): truncated 15-bit coefficients
        return ((9797 * r + 19234 * g + 3737 * b) >> 15).astype(np.uint8)
    return ((4899 * r + 9617 * g + 1868 * b + 8192) >> 14).astype(np.uint8)  # OpenCV BGR2GRAY


def gray_like_opencv(im: Image.Image, image_format: str | None = None) -> np.ndarray:
    """(H, W) grey of a decoded image as cv2.IMREAD_GRAYSCALE reads its file (module docstring): uint8, or
    float64 in [0, 1] for a float image. ``image_format`` defaults to ``im.format`` (PNG and others differ)."""
    mode, image_format = im.mode, image_format or im.format
    if mode == "L":
        return np.asarray(im)
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode.startswith("I;16"):
        return (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)
    if mode == "I":  # 32-bit integer: 16-bit content scaled like OpenCV, 8-bit content kept
        a = np.asarray(im)
        return (np.clip(a, 0, 65535) >> 8).astype(np.uint8) if a.max() > 255 else np.clip(a, 0, 255).astype(np.uint8)
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1:
            return a
        return np.clip(np.round(np.nan_to_num(a)), 0, 255).astype(np.uint8)
    if mode == "LA":
        return np.asarray(im.getchannel("L"))
    return _luminance(np.asarray(im.convert("RGB")), image_format)


def _writable(a: np.ndarray) -> np.ndarray:
    """A writable, contiguous array (PIL hands out read-only views; torch.from_numpy needs writable memory)."""
    return a if a.flags.writeable and a.flags.c_contiguous else np.array(a)


def read_gray(path: str | Path) -> np.ndarray:
    """A saliency map as (H, W) uint8 (or float64 in [0, 1] for a float image), read like cv2.IMREAD_GRAYSCALE."""
    im = _open(path, gray=True)
    try:
        return _writable(gray_like_opencv(im))
    except (ValueError, OSError) as e:
        raise CorruptFileError(f"unsupported image mode {im.mode!r} in {path}") from e


def read_mask(path: str | Path) -> np.ndarray:
    """Decode a mask file to ``uint8 (H, W)`` with raw values 0..255 (see the module docstring for modes)."""
    im = _open(path, gray=True)
    try:
        out = gray_like_opencv(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            alpha = np.asarray(im if im.mode == "LA" else im.convert("RGBA"))[:, :, -1]
            if out.size and out.min() == out.max() and alpha.min() != alpha.max():  # an alpha matte
                out = alpha
    except (ValueError, OSError) as e:
        raise CorruptFileError(f"unsupported mask mode {im.mode!r} in {path}") from e
    if out.dtype != np.uint8:  # a float map in [0, 1]
        out = np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
    out = np.ascontiguousarray(out, dtype=np.uint8)
    if out.size and out.max() == 1:  # 0/1-coded binary mask
        out = out * np.uint8(255)
    return _writable(out)


# --------------------------------------------------------------------------------------------------------------
# pairing


def _index_folder(folder: Path, exts: Sequence[str], what: str) -> dict[str, Path]:
    """stem -> file for the files of ``folder`` whose extension is in ``exts`` (case-insensitive)."""
    exts_l = tuple(e.lower() for e in exts)
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in exts_l:
            continue
        if p.stem in found:
            raise DataError(f"two {what} files share the stem {p.stem!r}: {found[p.stem]} and {p}; keep one")
        found[p.stem] = p
    return found


def read_list_file(path: str | Path) -> list[str]:
    """Stems listed in a split file: one entry per line, blank lines and ``#`` comments ignored.

    An entry may be a bare stem (``0001``), a file name (``0001.jpg``) or a path (``imgs/0001.png``); only the
    first whitespace-separated token is used (so ``img.jpg mask.png`` pair lines work too).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"split list file not found: {path}")
    stems: list[str] = []
    seen: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        token = line.split()[0].replace("\\", "/").rsplit("/", 1)[-1]
        stem = Path(token).stem if Path(token).suffix.lower() in IMAGE_EXTS + MASK_EXTS else token
        if stem not in seen:
            seen.add(stem)
            stems.append(stem)
    if not stems:
        raise DataError(f"split list file {path} lists no files")
    return stems


def list_pairs(
    image_dir: str | Path,
    mask_dir: str | Path,
    image_exts: Sequence[str] = IMAGE_EXTS,
    mask_exts: Sequence[str] = MASK_EXTS,
    *,
    stems: Iterable[str] | None = None,
    skip_unpaired: bool = False,
    what: str = "dataset",
) -> list[Pair]:
    """Pair the images of ``image_dir`` with the masks of ``mask_dir`` by file stem, sorted by stem.

    ``image_dir`` and ``mask_dir`` may be the same folder (MSRA10K) when the extension sets are disjoint.
    ``stems`` restricts the result to those stems (a split list): each must have both files, and files outside the
    list are ignored. Without ``stems`` every image must have a mask and every mask an image. A missing partner
    raises :class:`UnpairedFileError` naming the file, unless ``skip_unpaired`` (then one warning with the count).
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    for d, kind in ((image_dir, "image"), (mask_dir, "mask")):
        if not d.is_dir():
            raise MissingDataError(f"{what}: {kind} folder not found: {d}")
    if image_dir == mask_dir and set(e.lower() for e in image_exts) & set(e.lower() for e in mask_exts):
        raise ValueError("image and mask folders are the same, so their extension sets must be disjoint")
    images = _index_folder(image_dir, image_exts, "image")
    masks = _index_folder(mask_dir, mask_exts, "mask")

    if stems is not None:
        wanted = list(dict.fromkeys(stems))
        problems = []
        for s in wanted:
            if s not in images:
                problems.append(f"{s!r} has no image in {image_dir} (extensions {', '.join(image_exts)})")
            elif s not in masks:
                problems.append(f"image {images[s]} has no mask {mask_dir / (s + mask_exts[0])}")
        keep = [s for s in wanted if s in images and s in masks]
        if problems:
            msg = f"{what}: {len(problems)} listed file(s) cannot be paired, e.g. " + "; ".join(problems[:5])
            if not skip_unpaired:
                raise UnpairedFileError(msg + " (set skip_unpaired: true to skip them)")
            warnings.warn(msg + " -- skipped (skip_unpaired)", stacklevel=2)
        return [Pair(s, images[s], masks[s]) for s in sorted(keep)]

    no_mask = [images[s] for s in images if s not in masks]
    no_image = [masks[s] for s in masks if s not in images]
    if no_mask or no_image:
        parts = []
        if no_mask:
            parts.append(
                f"{len(no_mask)} image(s) without a mask, e.g. {no_mask[0]} "
                f"(expected {mask_dir / (no_mask[0].stem + mask_exts[0])})"
                + (f"; also {', '.join(p.name for p in no_mask[1:5])}" if len(no_mask) > 1 else "")
            )
        if no_image:
            parts.append(
                f"{len(no_image)} mask(s) without an image, e.g. {no_image[0]} "
                f"(expected {image_dir / (no_image[0].stem + image_exts[0])})"
                + (f"; also {', '.join(p.name for p in no_image[1:5])}" if len(no_image) > 1 else "")
            )
        msg = f"{what}: " + " and ".join(parts)
        if not skip_unpaired:
            raise UnpairedFileError(msg + " (set skip_unpaired: true to skip unpaired files)")
        warnings.warn(
            f"{what}: skipped {len(no_mask) + len(no_image)} unpaired file(s) "
            f"({len(no_mask)} image(s) without mask, {len(no_image)} mask(s) without image)",
            stacklevel=2,
        )
    common = sorted(set(images) & set(masks))
    return [Pair(s, images[s], masks[s]) for s in common]


def check_pair_sizes(pair: Pair, image_hw: tuple[int, int] | None = None, mask_hw: tuple[int, int] | None = None):
    """Raise :class:`SizeMismatchError` naming both files when image and mask sizes differ.

    Sizes are given as (H, W) when already decoded, else read from the headers.
    """
    if image_hw is None:
        w, h = image_size(pair.image)
        image_hw = (h, w)
    if mask_hw is None:
        w, h = image_size(pair.mask)
        mask_hw = (h, w)
    if tuple(image_hw) != tuple(mask_hw):
        raise SizeMismatchError(
            f"image {pair.image} is {image_hw[1]}x{image_hw[0]} (WxH) but its mask {pair.mask} is "
            f"{mask_hw[1]}x{mask_hw[0]}"
        )
