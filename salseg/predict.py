"""``salseg predict``: a trained run, a checkpoint or a training-free method on a folder of images.

What a method is read from (:func:`load_method`):

* a run folder ``runs/<NAME>/<stamp>/`` (its ``config.yaml`` and ``checkpoints/last.ckpt``), or ``runs/<NAME>/``
  (its newest run with a checkpoint);
* a checkpoint file: its run's ``config.yaml`` when it lies in ``<run>/checkpoints/``, else its ``salseg_model``
  stamp (:func:`salseg.runner.model_kind_stamp`) and its own hyper-parameters;
* an experiment name: a method that trains nothing (Region Contrast: ``rc_shapes``) is built from the config;
  one that trains is read from the newest run of that experiment.

Each image goes through the test loop's path: decoded by :func:`salseg.data.io.read_image`, resized to the
method's input side (the run's ``data.image_size``; none: native size) by the eval
:class:`~salseg.data.transforms.JointTransform`, batched by :func:`~salseg.data.collate.collate_samples`, and the
method's ``predict_step`` (= its ``test_step``) gives ``{map_name: maps}``. The chosen map (the primary, the first
entry, unless ``map_name``) is resized to the image's native size and quantised to 8 bits by the evaluation
callback's own :func:`~salseg.callbacks.scorers.to_gt_resolution`, so a written PNG equals the map the test loop
scores (README "Outputs and tracking"). A semantic map (a method's ``semantic_maps``, e.g. DCSP's
``segmentation``) is written as its class-index PNG (0 background, c + 1 class c) with the PASCAL VOC palette.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image

from salseg import registry
from salseg.checkpoints import build_from_checkpoint, checkpoint_kind, read_checkpoint
from salseg.errors import SalsegError


class PredictError(SalsegError, ValueError):
    pass


@dataclass
class Predictor:
    model: torch.nn.Module
    image_size: int | None  # the method's input side; None: every image at its native size
    source: str  # what it was loaded from, for the printed summary


def _image_extensions() -> set[str]:
    Image.init()  # every format PIL can open, not only the ones imported so far
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """The image files (any format PIL opens, by extension) in ``folder``, sorted; an error when there are none."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise PredictError(f"images folder not found: {folder}")
    exts = _image_extensions()
    files = folder.rglob("*") if recursive else folder.iterdir()
    images = sorted(p for p in files if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."))
    if not images:
        raise PredictError(f"no images in {folder} (expected files PIL can open, e.g. .jpg, .png"
                           f"{'' if recursive else '; --recursive also searches its subfolders'})")
    outputs: dict[Path, Path] = {}
    for p in images:
        name = p.relative_to(folder).with_suffix(".png")
        if name in outputs:
            raise PredictError(f"{outputs[name]} and {p} would both be written as {name}: rename one")
        outputs[name] = p
    return images


# -------------------------------------------------------------------------------------------------- loading
def _from_run_dir(run_dir: Path) -> Predictor:
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise PredictError(f"run folder {run_dir} has no checkpoint: expected {ckpt}")
    return _from_checkpoint(ckpt)


def _from_checkpoint(ckpt: Path) -> Predictor:
    """The checkpoint's model, read (weights_only=True, on the CPU whatever device saved it) and built by
    :mod:`salseg.checkpoints`; a run's checkpoint takes the run config's values for the method's
    ``test_time_hparams`` (as ``test_only=true ckpt_path=...`` does) and the run's input size."""
    checkpoint = read_checkpoint(ckpt)
    cls = registry.model_class(checkpoint_kind(ckpt, checkpoint))
    config = ckpt.parent.parent / "config.yaml"
    if ckpt.parent.name == "checkpoints" and config.is_file():  # a run's checkpoint: the run's model and input size
        cfg = OmegaConf.to_container(OmegaConf.load(config), resolve=False)
        model = build_from_checkpoint(cls, ckpt, cfg.get("model"), ckpt=checkpoint)
        size = (cfg.get("data") or {}).get("image_size")
    else:
        model = build_from_checkpoint(cls, ckpt, ckpt=checkpoint)
        size = getattr(model.hparams, "image_size", None)  # MEnet is built for one input side
    return Predictor(model, size, str(ckpt))


def load_method(source: str, overrides: Sequence[str] = ()) -> Predictor:
    """A method ready to predict, from a run folder, a checkpoint or an experiment name (module docstring)."""
    from salseg.tracking import latest_run_dir

    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "config.yaml").is_file():
            return _from_run_dir(path)
        newest = latest_run_dir(path.parent, path.name)
        if newest is None:
            raise PredictError(f"{path} is neither a run folder (config.yaml + checkpoints/last.ckpt) nor a folder "
                               f"of runs with a checkpoint")
        return _from_run_dir(newest)
    if path.is_file():
        return _from_checkpoint(path)
    if path.suffix or "/" in source:
        raise PredictError(f"no run folder or checkpoint at {path}")
    from salseg.config import compose, resolve

    container = resolve(compose(source, overrides))
    model = registry.build_model(container["model"])
    if model.trainable:
        newest = latest_run_dir(Path(container["runs_dir"]), container["name"])
        if newest is None:
            raise PredictError(f"experiment {source!r} trains a {container['model']['kind']} model and has no run "
                               f"with a checkpoint under {Path(container['runs_dir']) / source}: train it first "
                               f"(salseg run {source}) or give a run folder or checkpoint")
        return _from_run_dir(newest)
    return Predictor(model, container["data"].get("image_size"), f"experiment {source}")


# -------------------------------------------------------------------------------------------------- predicting
class ImageFolder(torch.utils.data.Dataset):
    """Samples ``{image, name, size}``: the eval transform of each image (as the test datasets do)."""

    def __init__(self, paths: Sequence[Path], image_size: int | None):
        from salseg.data.transforms import JointTransform

        self.paths = list(paths)
        self.transform = JointTransform(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        from salseg.data.io import read_image

        image = read_image(self.paths[index])  # an unreadable file: CorruptFileError naming it
        return {"image": self.transform(image)["image"], "index": index, "height": image.shape[0],
                "width": image.shape[1]}


def _native(maps, heights, widths, semantic: bool) -> list[np.ndarray]:
    """Each map at its image's native size, as the evaluation callback scores it (uint8 maps, or class labels)."""
    from salseg.callbacks.scorers import labels_at_gt_resolution, to_gt_resolution

    sizes = [torch.empty((int(h), int(w)), dtype=torch.uint8) for h, w in zip(heights, widths)]
    if semantic:
        return [m.cpu().numpy().astype(np.uint8) for m in labels_at_gt_resolution(maps, sizes)]
    return [m.cpu().numpy() for m in to_gt_resolution(maps, sizes)]


def _write(array: np.ndarray, path: Path, semantic: bool) -> None:
    from salseg.plots import label_palette

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)  # (H, W) uint8: 8-bit grayscale
    if semantic:  # the same indices, shown in colour by the VOC palette
        im = im.convert("P")
        im.putpalette(label_palette().tobytes())
    im.save(path)


def predict_folder(predictor: Predictor, images: str | Path, out: str | Path, *, map_name: str | None = None,
                   batch_size: int = 8, recursive: bool = False, num_workers: int = 0, device: str = "cpu",
                   progress: bool = True) -> list[Path]:
    """Write one ``<stem>.png`` per image of ``images`` into ``out`` (subfolders kept); return the written paths."""
    from tqdm.auto import tqdm

    from salseg.data.collate import collate_samples

    if batch_size < 1:
        raise PredictError(f"--batch-size must be positive, got {batch_size}")
    folder = Path(images).expanduser()
    paths = list_images(folder, recursive)
    out = Path(out).expanduser()
    model = predictor.model.to(device).eval()
    semantic_maps = set(getattr(model, "semantic_maps", ()) or ())
    loader = torch.utils.data.DataLoader(ImageFolder(paths, predictor.image_size), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=collate_samples)
    written: list[Path] = []
    with torch.inference_mode(), tqdm(total=len(paths), unit="img", disable=not progress) as bar:
        for batch_idx, batch in enumerate(loader):
            image = batch["image"]
            batch["image"] = [t.to(device) for t in image] if isinstance(image, list) else image.to(device)
            outputs = model.predict_step(batch, batch_idx)
            name = map_name or next(iter(outputs))
            if name not in outputs:
                raise PredictError(f"--map {name!r}: {type(model).__name__} makes the maps {list(outputs)}")
            semantic = name in semantic_maps
            maps = _native(outputs[name], batch["height"], batch["width"], semantic)
            for i, array in zip(batch["index"].tolist(), maps):
                target = out / paths[i].relative_to(folder).with_suffix(".png")
                _write(array, target, semantic)
                written.append(target)
            bar.update(len(maps))
    return written


def pick_device(device: str) -> str:
    """``auto``: the GPU when there is one, else the CPU; any other value is passed to torch as is."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise PredictError(f"--device {device!r}: not a torch device (auto, cpu, cuda, cuda:1, mps)") from err
    if kind == "cuda" and not torch.cuda.is_available():
        raise PredictError(f"--device {device!r}: no CUDA GPU is visible to torch; use --device cpu (or auto)")
    return device
