import os
import signal

import pytest
import torch

# A suite started in the background by a non-interactive shell (nohup, `cmd &`, some CI runners) inherits
# SIGINT ignored, and so would every child it starts: the tests that press Ctrl-C on a child need the
# normal disposition (a Python handler is reset to the default in the child at exec).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Keep the suite fast and deterministic on small CPUs; tests never touch the network.
torch.set_num_threads(min(2, os.cpu_count() or 1))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Datasets downloads and metric caches go to a per-session temp dir, never the user's cache."""
    monkeypatch.setenv("GANHUB_CACHE", str(tmp_path_factory.getbasetemp() / "ganhub-cache"))


pytest_plugins = ["tests.fakehub"]  # the `fake_hub` fixture
