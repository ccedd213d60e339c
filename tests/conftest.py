import os

import pytest
import torch

# Keep the suite fast and deterministic on small CPUs; tests never touch the network.
torch.set_num_threads(min(2, os.cpu_count() or 1))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Datasets downloads and metric caches go to a per-session temp dir, never the user's cache."""
    monkeypatch.setenv("GANHUB_CACHE", str(tmp_path_factory.getbasetemp() / "ganhub-cache"))


pytest_plugins = ["tests.fakehub"]  # the `fake_hub` fixture
