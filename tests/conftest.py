import os
import shutil
import subprocess
from pathlib import Path

import pytest
from launch_support import SCRIPT, SKIP_EXIT, skip_reason

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """../shared/data next to the repository (env SALSEG_SHARED_DATA overrides); tests skip when absent."""
    return Path(os.environ.get("SALSEG_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent")
    return path


@pytest.fixture(scope="session")
def _pixel_hash_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("salseg_cache")


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch, _pixel_hash_cache):
    # Tests never touch the network, whatever the developer's W&B login.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("SALSEG_RUN_DIR", raising=False)
    monkeypatch.setenv("SALSEG_CACHE", str(_pixel_hash_cache))  # the overlap check's pixel hashes (overlap.py)


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the duration of a test, restored afterwards: small training runs are faster
    so on a 2-core box and do not spin against other processes (test files opt in with pytestmark)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def slurm_cluster():
    """The one-node SLURM of `.ci/slurm_localhost.sh` (tests/test_slurm.py), up; where it cannot run, the
    test skips with the script's reason; stopped at the end only when this fixture started it."""
    if os.environ.get("CI") and shutil.which("sbatch") is None:
        pytest.skip("SLURM tests: CI without slurm-wlm (no sbatch on PATH); run .ci/slurm_localhost.sh as root")
    if shutil.which("apt-get") is None and shutil.which("sbatch") is None:
        pytest.skip("SLURM tests: no sbatch and no apt-get to install slurm-wlm")
    up = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True).returncode == 0
    if not up:
        got = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
        if got.returncode == SKIP_EXIT:
            pytest.skip(f"SLURM tests: {skip_reason(got.stdout)}")
        assert got.returncode == 0, f"{SCRIPT} start failed:\n{got.stdout}{got.stderr}"
    yield
    if not up:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True)
