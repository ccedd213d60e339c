import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ganhub import registry
from ganhub.errors import ConfigError, FolderError, TrainingDiverged
from ganhub.run import CHECKPOINT
from ganhub.sample import sample
from ganhub.source import load_generator
from ganhub.train import _load_checkpoint, _State, train

LIMIT = 64  # a small slice of Fashion-MNIST keeps every run to seconds


def tiny(name: str) -> dict:
    return dict(registry.get(name).test_config)


def run(name, out, steps, **kw):
    kw.setdefault("overrides", tiny(name))
    return list(train(name, dataset="fashion-mnist", steps=steps, out=out, limit=LIMIT, **kw))


@pytest.mark.parametrize("name", ["vanilla", "dcgan", "wgan-gp", "sngan", "stylegan-lite"])
def test_few_steps_give_a_loadable_folder(tmp_path, name):
    events = run(name, tmp_path / "run", 4, preview_every=1, checkpoint_every=2)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "preview" in kinds and "checkpoint" in kinds
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == [1, 2, 3, 4] and all(e.losses for e in steps)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["variant"] == name and meta["plugin"]["package"] == f"ganhub-{name}" and meta["step"] == 4
    assert meta["recipe"]["dataset"] == "fashion-mnist" and meta["recipe"]["steps"] == 4 and meta["recipe"]["seed"] == 0
    loaded = load_generator(tmp_path / "run")
    x = sample(loaded.G, 5, seed=3)
    assert x.shape == (5, 1, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, sample(loaded.G, 5, seed=3))


def checkpoint_tensors(folder: Path) -> dict:
    return {k: v for k, v in load_file(folder / CHECKPOINT).items()}


@pytest.mark.parametrize("name", ["dcgan", "stylegan-lite", "wgan-gp"])
def test_resume_is_exact(tmp_path, name):
    """2N steps in one go == N steps, stop, resume to 2N: bit-identical weights, optimiser and RNG."""
    run(name, tmp_path / "once", 6, checkpoint_every=2, preview_every=1)
    run(name, tmp_path / "twice", 3, checkpoint_every=2, preview_every=2)
    events = run(name, tmp_path / "twice", 6, resume=True, checkpoint_every=5, preview_every=3)
    assert events[0].step == 3 and events[-1].step == 6
    a, b = checkpoint_tensors(tmp_path / "once"), checkpoint_tensors(tmp_path / "twice")
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"resume differs in {diff[:5]}"
    ma, mb = load_file(tmp_path / "once" / "model.safetensors"), load_file(tmp_path / "twice" / "model.safetensors")
    assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
    log = [json.loads(x)["step"] for x in (tmp_path / "twice" / "checkpoint" / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4, 5, 6]


def test_stop_event_keeps_a_checkpoint_and_resume_continues(tmp_path):
    import threading

    stop = threading.Event()
    seen = []
    for ev in train("dcgan", dataset="fashion-mnist", steps=50, out=tmp_path / "r", limit=LIMIT,
                    overrides=tiny("dcgan"), stop=stop, checkpoint_every=100):
        seen.append(ev)
        if ev.kind == "step" and ev.step == 3:
            stop.set()
    assert seen[-1].kind == "done" and seen[-1].step == 3 and "--resume" in seen[-1].message
    meta = json.loads((tmp_path / "r" / "config.json").read_text())
    assert meta["step"] == 3
    events = run("dcgan", tmp_path / "r", 5, resume=True)
    assert events[-1].kind == "done" and events[-1].step == 5


def test_letting_go_of_the_loop_is_a_stop_and_keeps_a_checkpoint(tmp_path):
    """The app's browser tab closing closes the generator: the steps done so far are saved, not lost."""
    events = train("dcgan", dataset="fashion-mnist", steps=50, out=tmp_path / "r", limit=LIMIT,
                   overrides=tiny("dcgan"), checkpoint_every=100)
    for ev in events:
        if ev.kind == "step" and ev.step == 3:
            break
    assert not (tmp_path / "r" / "checkpoint" / "training.safetensors").exists()
    events.close()
    assert json.loads((tmp_path / "r" / "config.json").read_text())["step"] == 3
    assert run("dcgan", tmp_path / "r", 5, resume=True)[-1].step == 5


def test_resume_refuses_config_changes_and_existing_folders(tmp_path):
    run("dcgan", tmp_path / "r", 2)
    with pytest.raises(FolderError, match="--resume"):
        run("dcgan", tmp_path / "r", 4)
    with pytest.raises(ConfigError, match="cannot change"):
        run("dcgan", tmp_path / "r", 4, resume=True, overrides={**tiny("dcgan"), "g_width": 8})
    with pytest.raises(ConfigError, match="holds a 'dcgan' run"):
        run("sngan", tmp_path / "r", 4, resume=True)
    with pytest.raises(FolderError, match="no config.json"):
        run("dcgan", tmp_path / "empty", 4, resume=True)


def test_divergence_stops_with_a_message_and_keeps_the_last_checkpoint(tmp_path):
    base = registry.get("dcgan")

    def loss(phase, **kw):
        value, logs = base.loss(phase, **kw)
        return (value * float("nan"), logs) if kw["step"] >= 4 else (value, logs)

    broken = dataclasses.replace(base, loss=loss)
    with pytest.raises(TrainingDiverged, match=r"diverged at step 4 .*last good checkpoint"):
        list(train(broken, dataset="fashion-mnist", steps=10, out=tmp_path / "r", limit=LIMIT,
                   overrides=tiny("dcgan"), checkpoint_every=2))
    assert json.loads((tmp_path / "r" / "config.json").read_text())["step"] == 4
    G = load_generator(tmp_path / "r").G
    assert torch.isfinite(sample(G, 4, 0)).all()


def test_a_crash_mid_save_leaves_the_previous_state_loadable(tmp_path, monkeypatch):
    run("dcgan", tmp_path / "r", 2)
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").glob("*.safetensors")}
    import ganhub.run as folder

    real_replace, calls = os.replace, []

    def crash(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the checkpoint got through, then the power went out
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(folder.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        run("dcgan", tmp_path / "r", 4, resume=True)
    monkeypatch.setattr(folder.os, "replace", real_replace)
    assert not list((tmp_path / "r").rglob("*.tmp")), "temporary files left behind"
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").glob("*.safetensors")} == before
    load_generator(tmp_path / "r")
    assert run("dcgan", tmp_path / "r", 4, resume=True)[-1].step == 4


@pytest.mark.slow
def test_sigkill_at_any_moment_never_leaves_an_unloadable_folder(tmp_path):
    """Kill a real `ganhub train` at several moments while it checkpoints every step."""
    out = tmp_path / "r"
    sets = [f"--set={k}={v}" for k, v in tiny("dcgan").items()]
    cmd = [sys.executable, "-m", "ganhub.cli", "train", "dcgan", "--dataset", "fashion-mnist", "--limit", "64",
           "--steps", "100000", "--out", str(out), "--checkpoint-every", "1", "--quiet", *sets]
    log = out / "checkpoint" / "log.jsonl"
    for delay in [0.0, 0.13, 0.29, 0.41, 0.57]:  # after the run is writing checkpoints, kill at varied moments
        start_lines = len(log.read_text().splitlines()) if log.exists() else 0
        proc = subprocess.Popen(cmd + (["--resume"] if (out / CHECKPOINT).exists() else []),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < start_lines + 2):
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        load_generator(out)  # the EMA generator and config load
        cfg = registry.get("dcgan").make_config(**tiny("dcgan"))
        G, D = registry.get("dcgan").build(cfg)
        s = _State(G, D, G, torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters()))
        _load_checkpoint(out, s, torch.device("cpu"))
    assert (out / CHECKPOINT).exists(), "no checkpoint was ever written"


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    """The multi-GPU path (manual gradient averaging, rank 0 writes) runs under torchrun with gloo on CPU."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "ganhub.cli", "train", "dcgan",
           "--dataset", "fashion-mnist", "--limit", "64", "--steps", "3", "--out", str(out), "--quiet", *[f"--set={k}={v}" for k, v in tiny("dcgan").items()]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("on fashion-mnist") == 1 and "x 2 processes" in proc.stdout
    assert json.loads((out / "config.json").read_text())["step"] == 3
    load_generator(out)
