"""A run folder killed at any instant is resumable or restartable, never wedged; one trainer at a time.

Real `ganhub train` processes are killed (SIGKILL) or interrupted (SIGINT) at chosen moments.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from ganhub import registry
from ganhub.errors import FolderError
from ganhub.run import RunFolder
from ganhub.source import load_generator
from ganhub.train import train

SETS = [f"--set={k}={v}" for k, v in registry.get("dcgan").test_config.items()]
TINY = dict(registry.get("dcgan").test_config)


def launch(out, *extra, steps=100_000, checkpoint_every=1):
    cmd = [sys.executable, "-m", "ganhub.cli", "train", "dcgan", "--dataset", "fashion-mnist", "--limit", "64",
           "--steps", str(steps), "--out", str(out), "--checkpoint-every", str(checkpoint_every),
           "--preview-every", "100000", "--precision", "fp32", "--quiet", *SETS, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(condition, proc, timeout=120.0):
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"ganhub train exited {proc.returncode} early:\n{proc.stderr.read()}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the training process")
        time.sleep(0.02)


def log_lines(out) -> int:
    path = RunFolder(out).log_path
    return len(path.read_text().splitlines()) if path.exists() else 0


def assert_not_wedged(out):
    """Resumable (a checkpoint and its config.json, both readable) or restartable (no checkpoint)."""
    f = RunFolder(out)
    if f.has_checkpoint():
        assert f.has_config(), "a checkpoint without config.json: neither resumable nor restartable"
        assert f.checkpoint_step() is not None and f.read_checkpoint()
        assert f.spec.variant == "dcgan"
        if f.has_model():
            load_generator(out)
        train("dcgan", out=out, steps=10**6, resume=True)  # accepted (checked, not run)
    else:
        assert not f.has_model()
        train("dcgan", dataset="fashion-mnist", steps=1, out=out, overrides=TINY)  # a fresh start is accepted


def test_killed_while_starting_is_restartable_and_resumable(tmp_path):
    out = tmp_path / "r"
    proc = launch(out, checkpoint_every=100_000)
    wait_for(lambda: out.exists(), proc)  # the folder (its lock) appeared: kill before anything else
    proc.kill()
    proc.wait()
    assert_not_wedged(out)
    proc = launch(out, checkpoint_every=100_000)  # a fresh start into it, killed once config.json exists
    wait_for(lambda: RunFolder(out).has_config(), proc)
    proc.kill()
    proc.wait()
    f = RunFolder(out)
    assert f.has_config() and not f.has_checkpoint() and f.step == 0
    assert_not_wedged(out)
    events = list(train("dcgan", out=out, steps=2, resume=True, tensorboard=False))  # resume = start at step 0
    assert "no checkpoint yet" in events[0].message and events[-1].step == 2 and f.checkpoint_step() == 2


def test_sigkill_at_any_moment_never_wedges_and_a_busy_folder_is_refused(tmp_path):
    out = tmp_path / "r"
    for i, delay in enumerate([0.0, 0.07, 0.23]):  # while it checkpoints every step, at varied moments
        start = log_lines(out)
        proc = launch(out, *(["--resume"] if RunFolder(out).has_checkpoint() else []))
        wait_for(lambda: log_lines(out) >= start + 2, proc)  # noqa: B023 - evaluated right here
        if i == 0:  # a second trainer into the busy folder: refused with the holder's pid, before any work
            with pytest.raises(FolderError, match=f"in use: process {proc.pid} is training into it"):
                list(train("dcgan", out=out, steps=10**6, resume=True, tensorboard=False))
            with pytest.raises(FolderError, match="--resume|in use"):
                list(train("dcgan", dataset="fashion-mnist", steps=5, out=out, overrides=TINY, tensorboard=False))
            assert proc.poll() is None, "the running trainer was disturbed"
        time.sleep(delay)
        proc.kill()
        proc.wait()
        assert_not_wedged(out)
    f = RunFolder(out)
    step = f.checkpoint_step()
    assert step and f.lock_path.exists()  # the dead trainer's lock file is still there ...
    events = list(train("dcgan", out=out, steps=step + 2, resume=True, tensorboard=False))  # ... and taken over
    assert events[0].step == step and events[-1].step == step + 2
    assert [r["step"] for r in f.read_log()] == list(range(1, step + 3)), "log lines after the checkpoint are redone once"
    assert not list(out.rglob("*.tmp")), "stale temp files are cleaned when the folder is opened"


def test_a_cut_log_line_and_stale_temp_files_do_not_stop_a_resume(tmp_path):
    out = tmp_path / "r"
    kw = dict(dataset="fashion-mnist", limit=64, overrides=TINY, precision="fp32", tensorboard=False)
    list(train("dcgan", steps=3, out=out, **kw))
    f = RunFolder(out)
    with open(f.log_path, "a") as fh:
        fh.write('{"step": 4, "loss_D": 0.6')  # killed in the middle of a line
    stale = [out / ".model.safetensors.k1ll3d.tmp", out / "checkpoint" / ".training.safetensors.x.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    events = list(train("dcgan", out=out, steps=5, resume=True, tensorboard=False))
    assert events[-1].step == 5
    assert [r["step"] for r in f.read_log()] == [1, 2, 3, 4, 5]
    assert not any(p.exists() for p in stale)


def test_ctrl_c_keeps_a_checkpoint_and_says_so_truthfully(tmp_path):
    out = tmp_path / "r"
    proc = launch(out, checkpoint_every=100_000)  # no checkpoint would be written for a long time
    wait_for(lambda: log_lines(out) >= 2, proc)
    proc.send_signal(signal.SIGINT)  # finish the step, write a checkpoint, then stop
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    step = RunFolder(out).checkpoint_step()
    assert step is not None and f"the checkpoint in {out} (step {step}) is kept: continue with --resume" in err
    assert RunFolder(out).step == step and not RunFolder(out).lock_path.exists()


def test_ctrl_c_before_the_first_checkpoint_claims_none_and_leaves_nothing(tmp_path):
    out = tmp_path / "r"
    proc = launch(out, checkpoint_every=100_000)
    wait_for(lambda: out.exists(), proc)  # the folder is locked; the data is loading
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    if RunFolder(out).has_checkpoint():  # (rare) the interruption landed in the loop: then it kept and says so
        assert f"(step {RunFolder(out).checkpoint_step()}) is kept" in err
    else:
        assert "is kept" not in err and f"interrupted before the first checkpoint; there is nothing to resume in {out}" in err
        assert not out.exists(), "the folder this run created holds nothing worth keeping: it is removed"
