import os
from pathlib import Path

import pytest

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
