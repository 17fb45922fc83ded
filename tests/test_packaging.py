"""The installable package (issue 15 item 1): shipped YAML as package data, and the user's config search path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import setuptools

from salseg import config, config_paths
from salseg.cli import main
from salseg.config import compose, list_ablations, list_experiments
from salseg.studies.plan import load_ablation, load_comparison

ROOT = Path(__file__).resolve().parents[1]
RC = "defaults: {data: shapes, model: region_contrast, trainer: cpu, logger: csv}\n"


@pytest.fixture(autouse=True)
def no_leftover_config_dirs(monkeypatch):
    """`main` sets the --config-dir folders of this process; other tests must not inherit them."""
    monkeypatch.delenv(config_paths.ENV_VAR, raising=False)
    yield
    config_paths.set_config_dirs([])


def user_dir(root: Path, sigma: float = 0.05, experiment: str = "my_rc") -> Path:
    """A user folder: one experiment, an ablation, a comparison, and a model config shadowing the shipped one."""
    (root / "configs" / "model").mkdir(parents=True)
    shipped = (config.CONFIG_DIR / "model" / "region_contrast.yaml").read_text()
    (root / "configs" / "model" / "region_contrast.yaml").write_text(
        shipped.replace("sigma_s2: 0.4", f"sigma_s2: {sigma}"))
    (root / "experiments" / "ablations").mkdir(parents=True)
    (root / "experiments" / "comparisons").mkdir()
    (root / "experiments" / f"{experiment}.yaml").write_text(RC + "notes: mine\n")
    (root / "experiments" / "ablations" / "my_abl.yaml").write_text(f"base: {experiment}\nvariants: {{a: {{}}}}\n")
    (root / "experiments" / "comparisons" / "my_cmp.yaml").write_text(f"compare: [{experiment}, rc_shapes]\n")
    return root


def test_the_env_var_adds_experiments_and_shadows_a_shipped_group_config(tmp_path, monkeypatch):
    assert compose("rc_shapes").model.sigma_s2 == 0.4
    monkeypatch.setenv(config_paths.ENV_VAR, os.pathsep.join([str(user_dir(tmp_path / "u")), ""]))
    assert {"my_rc", "my_cmp", "quickstart", "rc_shapes"} <= set(list_experiments())
    assert {"my_abl", "rc_spatial"} <= set(list_ablations())
    assert compose("my_rc").notes == "mine"
    assert compose("rc_shapes").model.sigma_s2 == 0.05  # the shipped experiment with the user's model config
    assert compose("rc_shapes").data.test.shapes.size == 120  # ... and otherwise the shipped files
    assert str(load_ablation("my_abl").base) == "my_rc"
    assert [str(e) for e in load_comparison("my_cmp").compare] == ["my_rc", "rc_shapes"]


def test_config_dir_before_or_after_the_command_is_searched_first(tmp_path, monkeypatch, capsys):
    first, second, env = (user_dir(tmp_path / n, sigma=s) for n, s in (("a", 0.1), ("b", 0.2), ("c", 0.3)))
    monkeypatch.setenv(config_paths.ENV_VAR, str(env))
    for argv in (["--config-dir", str(first), "run", "rc_shapes", "--config-dir", str(second), "--print-config"],
                 ["run", "rc_shapes", "--print-config", "--config-dir", str(first), "--config-dir", str(second)]):
        assert main(argv) == 0
        assert "sigma_s2: 0.1\n" in capsys.readouterr().out  # the first --config-dir wins
    assert main(["run", "rc_shapes", "--print-config"]) == 0
    assert "sigma_s2: 0.3\n" in capsys.readouterr().out  # no --config-dir: the env var's folder
    assert main(["list", "--config-dir", str(first)]) == 0
    out = capsys.readouterr().out
    assert "my_rc" in out and "quickstart" in out and "my_abl" in out and "rc_spatial" in out


def test_an_experiment_only_folder_works_without_configs(tmp_path, capsys):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "solo.yaml").write_text(RC + "seed: 7\n")
    assert main(["--config-dir", str(tmp_path), "run", "solo", "--print-config"]) == 0
    assert "seed: 7\n" in capsys.readouterr().out


def test_a_bad_config_folder_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nope"
    assert main(["list", "--config-dir", str(missing)]) == 2
    assert capsys.readouterr().err == f"salseg: error: --config-dir {missing}: no such directory\n"
    assert main(["--config-dir", str(tmp_path), "list"]) == 2  # exists, but holds neither configs/ nor experiments/
    assert "expected a folder holding configs/<group>/*.yaml and/or experiments/*.yaml" in capsys.readouterr().err
    monkeypatch.setenv(config_paths.ENV_VAR, str(missing))
    assert main(["list"]) == 2
    assert capsys.readouterr().err == f"salseg: error: {config_paths.ENV_VAR} {missing}: no such directory\n"


def test_the_wheel_lists_every_package_and_ships_every_yaml():
    """pyproject lists its packages by hand (package-dir maps configs/ and experiments/ into salseg): a new
    subpackage missing from that list would be left out of the wheel."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    code = setuptools.find_packages(str(ROOT), include=["salseg*"])
    data = {name: folder for name, folder in tool["package-dir"].items()}
    assert data == {"salseg._configs": "configs", "salseg._experiments": "experiments"}
    subfolders = {f"{name}.{p}" for name, folder in data.items()
                  for p in setuptools.find_namespace_packages(str(ROOT / folder))}
    assert sorted(tool["packages"]) == sorted([*code, *data, *subfolders])
    assert tool["package-data"] == {"*": ["*.yaml"]}


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_lists_and_runs(tmp_path):
    """Build the wheel (offline, no build isolation), install it without dependencies into a fresh venv that sees
    this one's site-packages (torch etc.), and run it from a folder outside the repository."""
    python = Path(sys.executable)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", config_paths.ENV_VAR)}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    # Build from a copy of the files git knows (not venvs or runs), so no build/ or egg-info lands in the checkout.
    source = tmp_path / "src"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is not copied
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist",
                    source], check=True, env=env, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("salseg-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    # The dependencies (and pip) come from this venv's site-packages, put on the path by a plain path line: its
    # .pth files are not run, so the checkout's editable-install finder stays out, and the wheel's copy is the one
    # imported (the venv's own site-packages comes first on sys.path).
    site = next(iter(venv.glob("lib/python*/site-packages")))
    (site / "deps.pth").write_text(next(p for p in sys.path if p.endswith("site-packages")) + "\n")
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
                    "-q", wheel], check=True, env=env, timeout=300)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()

    def salseg(*args):
        return subprocess.run([venv / "bin" / "salseg", *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=600)

    where = subprocess.run([venv / "bin" / "python", "-c", "import salseg; print(salseg.__file__)"], cwd=cwd,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(site) and not Path(where).is_relative_to(ROOT), where
    listed = salseg("list")
    assert listed.returncode == 0, listed.stderr
    assert {"quickstart", "rc_shapes"} <= set(listed.stdout.split()) and "rc_spatial" in listed.stdout
    ran = salseg("run", "rc_shapes", "data.test.shapes.size=4", "data.num_workers=0", "logger=csv",
                 f"runs_dir={tmp_path / 'runs'}")
    assert ran.returncode == 0, ran.stderr[-3000:]
    (metrics,) = (tmp_path / "runs").rglob("metrics.json")
    assert json.loads(metrics.read_text())
