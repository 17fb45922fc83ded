"""salseg's Region Contrast against a C++ port of Cheng's own code, on the 20 SOD photos of ``sod300``.

Cheng's RC (CVPR 2011 code, as ported in ``saldet/`` of github.com/hwp/interactiveOR) is the reference: this
script runs salseg's ``RegionContrast`` module on every photo of ``<data>/images`` and compares each map with the
port's map of the same name (``<port_maps>/<stem>.png``, 8-bit): the mean per-image Pearson correlation between
the two maps at the photo's native size, and ``maxF`` / ``maxF_pr`` (``salseg.metrics.SODMetrics``) of each
against ``<data>/gt``. With ``--size S`` the photo is squashed to S x S first (the eval transform) and the map
resized back to native size the way the test-time evaluation does (bilinear, 8-bit), which is what the rc_*
experiments did before they ran at native size.

Building the port's maps (Debian 12; OpenCV 4.6 from ``apt-get install libopencv-dev``; the port is GPL, keep it
out of this repository)::

    mkdir /tmp/rcport && cd /tmp/rcport
    git -C <interactiveOR clone> archive HEAD saldet | tar -x
    # rc_main.cpp: for each argument, img = cv::imread(path); img.convertTo(img, CV_32FC3, 1.0/255);
    #   sal = getRC(img, 0.4, 50, 50, 0.5); sal.convertTo(u8, CV_8U, 255.0); cv::imwrite(out/<stem>.png, u8)
    g++ -O2 -c saldet/src/saldet.cpp -Isaldet/src -include opencv2/imgproc/types_c.h -Dmain=saldet_main \
        $(pkg-config --cflags opencv4) -o saldet.o      # types_c.h: the port uses the OpenCV 2 constants
    g++ -O2 -c saldet/src/segment-image.cpp -Isaldet/src $(pkg-config --cflags opencv4) -o seg.o
    g++ -O2 rc_main.cpp saldet.o seg.o -Isaldet/src $(pkg-config --cflags --libs opencv4) -o rc_main
    mkdir maps && ./rc_main maps <data>/images/*.jpg

(The port's own ``main`` does the same with ``getRC(img)`` = ``getRC(img, 0.4, 50, 50, 0.5)``, one image a call.)

Usage::

    python benchmarks/compare_rc_port.py /tmp/rcport/maps                   # salseg at native size
    python benchmarks/compare_rc_port.py /tmp/rcport/maps --size 300        # squashed to 300 x 300
    python benchmarks/compare_rc_port.py /tmp/rcport/maps --set seg_ref_pixels=120000 --json out.json

Only APIs present since f7aecd9 are used, so ``PYTHONPATH=<old checkout>`` scores an older salseg the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def default_data() -> Path:
    """``$SALSEG_SHARED_DATA/sod300``, else ``shared/data/sod300`` beside the repository (as the tests look)."""
    env = os.environ.get("SALSEG_SHARED_DATA")
    return (Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data") / "sod300"


def _value(text: str):
    """``--set`` values: int, float, None, true/false, else the string."""
    low = text.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps; NaN when either is constant (undefined)."""
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def compare(port_maps: Path, data: Path, size: int | None = None, params: dict | None = None,
            save_maps: Path | None = None) -> dict:
    """Scores of salseg's RC and of the port's maps on ``data`` (see the module docstring)."""
    from salseg.callbacks.scorers import to_gt_resolution
    from salseg.data.io import read_image
    from salseg.data.transforms import JointTransform
    from salseg.methods.baselines import RegionContrast
    from salseg.metrics import SODMetrics

    images = sorted((data / "images").glob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"no .jpg photos under {data / 'images'}")
    model = RegionContrast(**(params or {}))
    ours_metric, port_metric = SODMetrics(), SODMetrics()
    rows = []
    for path in images:
        port_path = port_maps / f"{path.stem}.png"
        if not port_path.is_file():
            raise FileNotFoundError(f"the port's map {port_path} is missing (one PNG per photo of {data / 'images'})")
        rgb = read_image(path)
        gt = torch.from_numpy(np.asarray(Image.open(data / "gt" / f"{path.stem}.png").convert("L")).copy())
        if size is None:
            x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
        else:
            x = JointTransform(size)(rgb)["image"]
        with torch.no_grad():
            maps = model(x[None])
        ours = to_gt_resolution(maps, [gt])[0]  # native size, 8 bits, as the test-time evaluation scores it
        port = torch.from_numpy(np.asarray(Image.open(port_path).convert("L")).copy())
        if port.shape != gt.shape:
            raise ValueError(f"{port_path}: size {tuple(port.shape)} differs from its GT's {tuple(gt.shape)}")
        ours_metric.update([ours], [gt])
        port_metric.update([port], [gt])
        rows.append({"name": path.stem, "pearson": pearson(ours.numpy(), port.numpy()),
                     "mae_to_port": float((ours.float() - port.float()).abs().mean() / 255.0)})
        if save_maps is not None:
            save_maps.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ours.numpy()).save(save_maps / f"{path.stem}.png")
    r = np.array([row["pearson"] for row in rows])
    keys = ("maxF", "maxF_pr", "MAE")
    ours_scores, port_scores = ours_metric.compute(), port_metric.compute()
    return {
        "n_images": len(rows),
        "size": size,
        "params": params or {},
        "mean_pearson": float(np.nanmean(r)),
        "min_pearson": float(np.nanmin(r)),
        "n_undefined_pearson": int(np.isnan(r).sum()),
        "salseg": {k: float(ours_scores[k]) for k in keys},
        "port": {k: float(port_scores[k]) for k in keys},
        "per_image": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port_maps", type=Path, help="folder of the port's 8-bit maps, <stem>.png")
    ap.add_argument("--data", type=Path, default=None, help="sod300 folder (images/ + gt/); default: see default_data")
    ap.add_argument("--size", type=int, default=None, help="squash to S x S first (the rc_* experiments before)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="RegionContrast keyword arguments")
    ap.add_argument("--json", type=Path, default=None, help="write the full result here")
    ap.add_argument("--save-maps", type=Path, default=None, help="write salseg's 8-bit maps here")
    args = ap.parse_args(argv)
    params = {}
    for item in args.set:
        key, sep, val = item.partition("=")
        if not sep:
            ap.error(f"--set expects KEY=VALUE, got {item!r}")
        params[key] = _value(val)
    res = compare(args.port_maps, args.data or default_data(), args.size, params, args.save_maps)
    for row in res["per_image"]:
        print(f"{row['name']:>8}  r={row['pearson']:.4f}  |ours-port|={row['mae_to_port']:.4f}")
    print(f"{res['n_images']} photos, size {'native' if args.size is None else args.size}, params {params}")
    print(f"mean Pearson r (salseg vs port) {res['mean_pearson']:.4f} (min {res['min_pearson']:.4f})")
    for who in ("salseg", "port"):
        print(f"{who:>7}: " + "  ".join(f"{k} {v:.4f}" for k, v in res[who].items()))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
