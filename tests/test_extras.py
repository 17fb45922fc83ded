"""Optional dependencies (pyproject.toml [project.optional-dependencies]): a feature whose extra is missing is one
line naming the extra; the lowest-versions constraints file pins exactly the bounds pyproject states; a checkpoint
path from config is read with ``weights_only=True`` (a crafted pickle is refused, its code never runs)."""

import sys
import tomllib
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version
from torch import nn

from salseg import cli
from salseg.errors import MissingExtraError, SalsegError

ROOT = Path(__file__).resolve().parents[1]


def _hide(monkeypatch, *modules):
    # a None entry in sys.modules makes `import name` raise ImportError, as if the package were not installed
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_coco_masks_without_pycocotools_name_the_coco_extra(monkeypatch):
    from salseg.data.coco import ann_to_mask

    _hide(monkeypatch, "pycocotools", "pycocotools.mask")
    with pytest.raises(MissingExtraError) as info:
        ann_to_mask({"segmentation": [[0, 0, 4, 0, 4, 4]]}, 8, 8)
    assert isinstance(info.value, SalsegError) and isinstance(info.value, ImportError)
    message = str(info.value)
    assert message.startswith("the COCO dataset (its polygon/RLE masks) needs pycocotools, which cannot be imported")
    assert message.endswith("pip install 'salseg[coco]'")


def test_gradient_map_without_captum_names_the_attribution_extra(monkeypatch):
    from salseg.methods.gd_saliency.gradient import gradient_saliency

    _hide(monkeypatch, "captum", "captum.attr")
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    with pytest.raises(MissingExtraError, match=r"the GD 'gradient' baseline map needs captum, .*"
                                                r"pip install 'salseg\[attribution\]'$"):
        gradient_saliency(model, torch.rand(1, 3, 8, 8))


def test_cli_prints_a_missing_extra_as_one_line(monkeypatch, capsys):
    from salseg.data.coco import ann_to_mask

    _hide(monkeypatch, "pycocotools", "pycocotools.mask")
    monkeypatch.setattr(cli, "_cmd_list", lambda args: ann_to_mask({"segmentation": []}, 4, 4))
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("salseg: error: the COCO dataset") and err.endswith("pip install 'salseg[coco]'\n")
    assert err.count("\n") == 1


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pycocotools_and_captum_are_extras_not_core_dependencies():
    project = _pyproject()["project"]
    core = {Requirement(r).name for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert not {"pycocotools", "captum"} & core
    assert [Requirement(r).name for r in extras["coco"]] == ["pycocotools"]
    assert [Requirement(r).name for r in extras["attribution"]] == ["captum"]
    # `make install` (and so `make test` and the quickstart's GD gradient map) installs both
    assert 'EXTRAS := dev,coco,attribution' in (ROOT / "Makefile").read_text()


def test_lowest_constraints_pin_every_lower_bound_of_pyproject():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    requirements = [Requirement(r) for r in
                    project["dependencies"] + extras["dev"] + extras["coco"] + extras["attribution"] + extras["slurm"]]
    pins = {}
    for line in (ROOT / ".ci" / "constraints-lowest.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pin = Requirement(line)
            pins[pin.name] = Version(next(iter(pin.specifier)).version)
    assert sorted(pins) == sorted(r.name for r in requirements)
    for req in requirements:
        (lower,) = [Version(s.version) for s in req.specifier if s.operator == ">="]
        pinned = pins[req.name]
        # the pin is the bound itself (a post-release such as torchmetrics 1.3.0.post0 counts as 1.3.0)
        assert pinned in req.specifier and Version(pinned.base_version) == lower, (req, pinned)


class _RunsCode:
    """Unpickling this calls ``Path.touch(marker)``: stands for any code a crafted checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_saliency_checkpoint_with_pickled_code_is_refused_and_its_code_never_runs(tmp_path):
    from salseg.methods.dcsp.saliency_source import SaliencyCheckpointError, SaliencySource

    marker = tmp_path / "code-ran"
    bad = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "salseg_model": "menet", "hyper_parameters": _RunsCode(marker)}, bad)
    with pytest.raises(SaliencyCheckpointError, match=r"model.saliency_checkpoint .*last.ckpt is not a readable "
                                                      r"PyTorch checkpoint of weights only"):
        SaliencySource(bad)
    assert not marker.exists()
