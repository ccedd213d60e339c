import logging
from pathlib import Path

import pytest
import torch

from ganhub import registry
from ganhub.cli import main
from ganhub.run import save_generator
from ganhub.sample import sample, to_grid
from ganhub.source import load_generator
from ganhub.testing import tiny_config
from ganhub.variant import build_models


@pytest.fixture
def folder(tmp_path):
    v = registry.get("dcgan")
    cfg = tiny_config(v)
    torch.manual_seed(0)
    G, _ = build_models(v, cfg)
    out = tmp_path / "run"
    save_generator(out, G, variant=v, cfg=cfg, step=7,
                   recipe={"dataset": "fashion-mnist", "steps": 7, "seed": 0, "batch_size": 4, "command": "ganhub train dcgan ..."})
    to_grid(sample(G.eval(), 16, 0)).save(out / "samples.png")
    (out / "checkpoint").mkdir()
    (out / "checkpoint" / "training.safetensors").write_bytes(b"resume state stays local")
    return out


def test_push_then_pull_round_trips_bit_identical(fake_hub, folder, tmp_path, capsys, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    assert main(["push", str(folder), "tester/fmnist-dcgan", "--token", fake_hub.token]) == 0
    assert "tester/fmnist-dcgan" in capsys.readouterr().out
    assert main(["push", str(folder), "tester/fmnist-dcgan", "--token", fake_hub.token]) == 0  # exist_ok
    capsys.readouterr()
    assert "training.safetensors" not in str(fake_hub.repos["tester/fmnist-dcgan"].branches["main"])
    card = (folder / "README.md").read_text()
    assert "library_name: ganhub" in card and "pipeline_tag: unconditional-image-generation" in card
    assert "ganhub train dcgan ..." in card and "![samples](samples.png)" in card

    assert main(["pull", "tester/fmnist-dcgan"]) == 0
    pulled = Path(capsys.readouterr().out.strip())
    assert (pulled / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    a, b = load_generator(folder).G, load_generator("tester/fmnist-dcgan").G
    assert torch.equal(sample(a, 8, seed=3), sample(b, 8, seed=3))

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub.close()  # the Hub is gone: the cache must serve it
    assert torch.equal(sample(load_generator("tester/fmnist-dcgan").G, 8, seed=3), sample(a, 8, seed=3))
    out = tmp_path / "grid.png"
    assert main(["sample", "tester/fmnist-dcgan", "--n", "4", "--out", str(out)]) == 0 and out.exists()

    # the token is nowhere: not in files written, not in output, not in logs
    captured = capsys.readouterr()
    assert fake_hub.token not in captured.out + captured.err + caplog.text
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert fake_hub.token.encode() not in f.read_bytes(), f


def test_error_paths_are_one_line(fake_hub, folder, capsys, monkeypatch):
    def run(argv):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
        assert fake_hub.token not in err and "hf_wrong" not in err
        return err

    assert "no Hugging Face token" in run(["push", str(folder), "tester/x"])
    assert "refused the token (401)" in run(["push", str(folder), "tester/x", "--token", "hf_wrongTokenValue12345"])
    assert "not found" in run(["pull", "tester/does-not-exist"])
    main(["push", str(folder), "tester/private", "--private", "--token", fake_hub.token])
    capsys.readouterr()
    assert "not found (or private" in run(["pull", "tester/private"])
    assert main(["pull", "tester/private", "--token", fake_hub.token]) == 0
    capsys.readouterr()
    assert "revision not found" in run(["pull", "tester/private", "--revision", "nope", "--token", fake_hub.token])
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE=1" in run(["pull", "tester/never-downloaded"])


def test_unreachable_hub_fails_fast(tmp_path, monkeypatch, capsys):
    import socket
    import time

    from tests.fakehub import point_client_at

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    point_client_at(monkeypatch, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    t = time.time()
    assert main(["pull", "tester/anything"]) == 2
    assert "cannot reach the Hub" in capsys.readouterr().err and time.time() - t < 30
