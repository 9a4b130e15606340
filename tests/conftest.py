import shutil
import tempfile

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _calibration_cache(tmp_path_factory):
    """The measured choices of ``auto`` (sanode.core.precision) cached for this session only,
    never in the user's ~/.cache (child processes, e.g. Snakemake's jobs, inherit it)."""
    import os

    from sanode.core.precision import CACHE_ENV

    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("sanode-cache"))
    yield
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture
def small_patterns():
    from sanode import block_patterns

    return block_patterns(20, 3, 0.5)


@pytest.fixture
def ray_env(monkeypatch):
    """A short private RAY_TMPDIR (Unix socket paths), no token auth, no inherited cluster
    address or MLflow store."""
    tmp = tempfile.mkdtemp(prefix="sray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_TMPDIR", tmp)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)
