"""Multi-process training under torchrun with 2 gloo processes on CPU (ganhub.distributed + ganhub.train).

Each test launches `python -m torch.distributed.run --standalone --nproc-per-node 2 ...` (a free port
every time) with a timeout, so a hang fails the test instead of freezing the suite. Runs are tiny
(dcgan 8 channels wide, 256 Fashion-MNIST images, 4 steps) and are shared between tests.

- every rank ends with the same G, D and EMA (each rank dumps hashes of its modules; rank 0's must
  also equal its saved checkpoint, so the dump hashes what was trained), and the ranks' RNG states
  in the checkpoint differ (each rank draws its own latents); the adaptive augmentation moves p by
  both ranks' counts, alike on both;
- the primitives: broadcast, one flattened all_reduce per average_grads (None grads consistent),
  any_rank, gather_rng/set_rng, launcher_prefix;
- with lr_rampdown on, N steps + resume to 2N equals 2N steps, bit for bit (the augmentation's counts too), and the
  recipe records the torchrun command,
  world size and global batch; resuming with one process is refused with one line;
- a NaN on one rank stops every rank (exit 2) with the one-line error (printed by rank 0), no hang.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganhub.errors import ConfigError

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")

TIMEOUT = 120  # seconds per torchrun launch; a hang fails instead of freezing the suite
TRAIN = ["train", "dcgan", "--dataset", "fashion-mnist", "--limit", "256", "--batch-size", "8", "--seed", "5",
         "--set", "g_width=8", "--set", "d_width=8", "--preview-every", "100", "--checkpoint-every", "100", "--quiet",
         "--set", "lr_rampdown=0.5"]
N = 2  # steps before the resume; the runs go to 2N
# lr_rampdown=0.5 of 2N = 4 steps lowers only the last step's rates, to half (ganhub.step.lr_factor: 1, 1, 1, 0.5);
# a first leg with --steps N = 2 trains at the full rate throughout, so N + resume to 2N still equals 2N in one go

# Run by every rank instead of `-m ganhub.cli`: checks the primitives, then runs the real CLI and dumps
# hashes of the modules the loop trained (captured where train.py hands them to make_optimizers and
# update_ema), so rank 1's G, D and EMA can be compared with rank 0's.
WORKER = '''
import hashlib, json, os, sys
import torch
from torch import nn
import ganhub.train as T
from ganhub import cli, distributed as dist

out_dir, argv = sys.argv[1], sys.argv[2:]
rank = int(os.environ["RANK"])


def digest(module):
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def primitives():
    w = dist.init()
    out = {"world": [w.rank, w.size, w.local_rank], "same_world": dist.init() == w, "is_main": w.is_main}
    torch.manual_seed(100 + w.rank)  # different weights and buffers on each rank ...
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2), nn.Linear(2, 2))
    m[1].running_mean.fill_(w.rank + 1.0)
    m[1].num_batches_tracked.fill_(10 + w.rank)
    dist.broadcast_module(m, w)  # ... until rank 0's are broadcast
    out["module"] = digest(m)
    out["running_mean"] = m[1].running_mean.tolist()
    out["num_batches_tracked"] = int(m[1].num_batches_tracked)
    ps = list(m.parameters())  # 0,1: Linear0  2,3: BN  4,5: Linear2  6,7: Linear3
    for p in ps[:4]:
        p.grad = torch.full_like(p, float(w.rank + 1))  # mean over ranks 1 and 2: 1.5
    ps[5].grad = torch.full_like(ps[5], 3.0)  # Linear2.weight (ps[4]) has no grad on any rank
    if w.rank == 1:  # Linear3 has grads on rank 1 only: rank 0 counts as zeros -> mean 2.0
        ps[6].grad, ps[7].grad = torch.full_like(ps[6], 4.0), torch.full_like(ps[7], 4.0)
    calls, real = [], torch.distributed.all_reduce
    torch.distributed.all_reduce = lambda *a, **k: (calls.append(1), real(*a, **k))[1]
    dist.average_grads(m, w)
    torch.distributed.all_reduce = real
    out["all_reduce_calls"] = len(calls)
    out["grads"] = [None if p.grad is None else sorted(set(p.grad.flatten().tolist())) for p in ps]
    out["any_rank"] = [dist.any_rank(w.rank == 1, w), dist.any_rank(False, w), dist.any_rank(True, w)]
    torch.manual_seed(1000 + w.rank)
    states = dist.gather_rng(w)
    out["rng_ranks"] = len(states)
    out["rng_cpu_differ"] = not torch.equal(states[0]["cpu"], states[1]["cpu"])
    draw = torch.rand(4).tolist()
    torch.manual_seed(0)
    dist.set_rng(states, w)
    out["rng_restored"] = torch.rand(4).tolist() == draw
    try:
        dist.set_rng(states[:1], w)
        out["set_rng_other_size"] = "accepted"
    except Exception as e:
        out["set_rng_other_size"] = f"{type(e).__name__}: {e}"
    dist.barrier(w)
    out["launcher_prefix"] = dist.launcher_prefix(w)
    return out


report = {"primitives": primitives() if os.environ.get("GANHUB_TEST_PRIMITIVES") else None}
seen = {}
make_optimizers, update_ema = T.make_optimizers, T.update_ema
def spy_optimizers(v, G, D, cfg):
    seen["D"] = D
    return make_optimizers(v, G, D, cfg)
def spy_ema(G_ema, G, *args, **kwargs):
    seen["G"], seen["G_ema"] = G, G_ema
    return update_ema(G_ema, G, *args, **kwargs)
T.make_optimizers, T.update_ema = spy_optimizers, spy_ema
adjust = T.AdaptiveAugment.adjust
def spy_adjust(self, step, global_batch, reduce=None):  # this rank's counts, and what the rule made of them
    local = self._sums.tolist()
    adjust(self, step, global_batch, reduce)
    if not step % self.interval:
        report.setdefault("augment", []).append({"step": step, "local": local, "r_t": self.r_t, "p": self.p})
T.AdaptiveAugment.adjust = spy_adjust


def write_report():
    report["hashes"] = {name: digest(m) for name, m in seen.items()}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)


real_exit = os._exit
def exit_after_report(code):  # under torchrun, cli.main ends the process itself (cli._exit_together)
    write_report()
    real_exit(code)
os._exit = exit_after_report
try:
    code = cli.main(argv)
finally:
    write_report()
sys.exit(code)
'''

# A test-only plugin (a fake installed distribution on PYTHONPATH): rank 1's D loss turns NaN at step 1.
NAN_PLUGIN = '''
import os
import torch
from torch import nn
from torch.nn import functional as F
from ganhub.variant import BaseConfig, Variant


def build(cfg):
    G = nn.Sequential(nn.Linear(cfg.z_dim, 16), nn.ReLU(), nn.Linear(16, 2))
    D = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1), nn.Flatten(0))
    return G, D


def loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    if phase == "D":
        value = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
        if os.environ.get("RANK") == "1" and step >= 1:
            value = value * float("nan")
        return value, {"loss_D": value.item()}
    value = F.softplus(-D(fake)).mean()
    return value, {"loss_G": value.item()}


variant = Variant(name="rank-nan", summary="Test-only: rank 1 diverges at step 1.", config_cls=BaseConfig,
                  build=build, loss=loss, modalities=("points",), test_config={"z_dim": 4, "batch_size": 8})
'''


def _env(extra_path: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    paths = [str(Path(__file__).resolve().parents[1])] + ([str(extra_path)] if extra_path else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def torchrun(args: list[str], cwd: Path, env: dict[str, str] | None = None,
             logs: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    if logs is not None:  # each rank's stdout/stderr in its own file: logs/<run>/attempt_0/<rank>/std{out,err}.log
        cmd += ["--log-dir", str(logs), "--redirects", "3"]
    try:
        return subprocess.run(cmd + args, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"torchrun did not finish within {TIMEOUT} s (a hang?): {' '.join(args)}\n{e.stderr}")


def _ok(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-6000:]}"


def _checkpoint(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = list((folder / "checkpoint").glob("*.safetensors"))
    assert len(files) == 1, f"expected one checkpoint file in {folder / 'checkpoint'}, got {files}"
    return load_file(str(files[0]))


def _digest(tensors: dict[str, torch.Tensor], prefix: str) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted((k[len(prefix) + 1 :], v) for k, v in tensors.items() if k.startswith(prefix + ".")):
        h.update(k.encode())
        h.update(v.contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def test_one_process_world_is_a_no_op(monkeypatch):
    from torch import nn

    from ganhub import distributed as dist

    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    w = dist.init()
    assert w == dist.World() and w.is_main and (w.rank, w.size, w.local_rank) == (0, 1, 0)
    assert dist.launcher_prefix(w) == "ganhub"
    m = nn.Linear(3, 2)
    m.weight.grad = torch.ones_like(m.weight)
    before = [t.clone() for t in m.parameters()]
    dist.broadcast_module(m, w)
    dist.average_grads(m, w)
    dist.barrier(w)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    assert torch.equal(m.weight.grad, torch.ones_like(m.weight)) and m.bias.grad is None
    assert dist.any_rank(True, w) and not dist.any_rank(False, w)
    torch.manual_seed(3)
    states = dist.gather_rng(w, "cpu")
    draw = torch.rand(3)
    dist.set_rng(states, w, "cpu")
    assert len(states) == 1 and torch.equal(torch.rand(3), draw)
    with pytest.raises(ConfigError, match="written by 2 process"):
        dist.set_rng(states * 2, w)


@pytest.mark.parametrize(("env", "match"), [({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR"),
                                            ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer")])
def test_a_world_size_without_torchrun_is_one_line(monkeypatch, env, match):
    from ganhub import distributed as dist

    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=match) as e:
        dist.init()
    assert "\n" not in str(e.value) and not torch.distributed.is_initialized()


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[Path, list[dict]]:
    """2N steps in one go, through the worker: (run folder, per-rank reports)."""
    tmp = tmp_path_factory.mktemp("dist")
    (tmp / "worker.py").write_text(WORKER)
    env = {**_env(), "GANHUB_TEST_PRIMITIVES": "1"}
    p = torchrun(["worker.py", str(tmp), *TRAIN, "--steps", str(2 * N), "--out", "straight"], tmp, env)
    _ok(p)
    reports = [json.loads((tmp / f"rank{r}.json").read_text()) for r in (0, 1)]
    return tmp / "straight", reports


def test_primitives_on_two_ranks(straight):
    _, reports = straight
    for rank, rep in enumerate(reports):
        pr = rep["primitives"]
        assert pr["world"] == [rank, 2, rank] and pr["same_world"] and pr["is_main"] is (rank == 0)
        assert pr["running_mean"] == [1.0] * 4 and pr["num_batches_tracked"] == 10  # rank 0's buffers, any dtype
        assert pr["all_reduce_calls"] == 1  # one flattened collective for the whole module
        assert pr["grads"] == [[1.5], [1.5], [1.5], [1.5], None, [3.0], [2.0], [2.0]]
        assert pr["any_rank"] == [True, False, True]
        assert pr["rng_ranks"] == 2 and pr["rng_cpu_differ"] and pr["rng_restored"]
        assert pr["set_rng_other_size"].startswith("ConfigError: the checkpoint was written by 1 process")
        assert pr["launcher_prefix"] == "torchrun --nproc-per-node 2 -m ganhub.cli"
    assert reports[0]["primitives"]["module"] == reports[1]["primitives"]["module"]


def test_every_rank_ends_with_the_same_G_D_and_EMA(straight):
    folder, reports = straight
    h0, h1 = reports[0]["hashes"], reports[1]["hashes"]
    assert sorted(h0) == ["D", "G", "G_ema"], "the worker did not see the loop's modules (train.py changed?)"
    assert h0 == h1
    ck = _checkpoint(folder)
    assert {name: _digest(ck, name) for name in h0} == h0  # the dump hashed what rank 0 saved
    # 256 images: augment=auto is on, at adaptive strength; p moves on both ranks by both ranks' counts
    a0, a1 = reports[0]["augment"], reports[1]["augment"]
    assert [a["step"] for a in a0] == [4] and [a["local"][1] for a in a0 + a1] == [4 * 8, 4 * 8]
    assert a0[0]["r_t"] == a1[0]["r_t"] == (a0[0]["local"][0] + a1[0]["local"][0]) / 64
    assert a0[0]["p"] == a1[0]["p"]
    assert not torch.equal(ck["rng.0.cpu"], ck["rng.1.cpu"])  # each rank's own RNG, both checkpointed
    from ganhub.run import RunFolder

    _, meta = RunFolder(folder).read_checkpoint()
    groups = [g for net in ("G", "D") for g in meta["opts"][net]["param_groups"]]
    assert [g["lr"] for g in groups] == pytest.approx([g["initial_lr"] / 2 for g in groups])  # lr_rampdown ran


def test_resume_under_torchrun_is_bit_exact_and_recorded(straight, tmp_path):
    folder, reports = straight
    (tmp_path / "worker.py").write_text(WORKER)
    _ok(torchrun(["-m", "ganhub.cli", *TRAIN, "--steps", str(N), "--out", "resumed"], tmp_path))
    _ok(torchrun(["worker.py", str(tmp_path), *TRAIN, "--steps", str(2 * N), "--out", "resumed", "--resume"],
                 tmp_path))
    # the adaptive augmentation's first interval straddles the stop: the resumed leg counted on from the checkpoint
    # (which holds both ranks' counts of the first N steps, pooled on rank 0), so it measured what one leg did
    resumed = [json.loads((tmp_path / f"rank{r}.json").read_text())["augment"] for r in (0, 1)]
    for leg in (resumed, [rep["augment"] for rep in reports]):
        assert [(a["step"], a["r_t"], a["p"]) for a in leg[0]] == [(a["step"], a["r_t"], a["p"]) for a in leg[1]]
    assert resumed[0][0]["r_t"] == reports[0]["augment"][0]["r_t"] and resumed[0][0]["p"] == reports[0]["augment"][0]["p"]
    assert [sum(a[0]["local"][1] for a in leg) for leg in (resumed, [rep["augment"] for rep in reports])] == [64, 64]
    a, b = _checkpoint(folder), _checkpoint(tmp_path / "resumed")
    assert sorted(a) == sorted(b)
    assert any(k.startswith("opt") for k in a) and any(k.startswith("rng.1.") for k in a)
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"N steps + resume to 2N differs from 2N steps in {diff[:10]}"
    from ganhub.run import RunFolder

    ma, mb = (RunFolder(f).read_checkpoint()[1]["augment"] for f in (folder, tmp_path / "resumed"))
    assert ma == mb and ma["count"] == 0  # p, and the counts of step N's half interval, went through the checkpoint
    from safetensors.torch import load_file

    ma, mb = load_file(str(folder / "model.safetensors")), load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert sorted(ma) == sorted(mb) and all(torch.equal(ma[k], mb[k]) for k in ma)  # the shipped EMA generator

    recipe = json.loads((tmp_path / "resumed" / "config.json").read_text())["recipe"]
    assert recipe["world_size"] == 2 and recipe["global_batch"] == 16 and recipe["batch_size"] == 8
    assert recipe["command"].startswith("torchrun --nproc-per-node 2 -m ganhub.cli train dcgan ")
    assert recipe["precision"] in ("auto", "bf16", "fp32")

    from ganhub.train import train  # one process cannot continue a 2-process run: one line, before any work

    with pytest.raises(ConfigError) as e:
        train("dcgan", out=tmp_path / "resumed", steps=3 * N, resume=True)
    assert "2 process" in str(e.value) and "torchrun --nproc-per-node 2" in str(e.value) and "\n" not in str(e.value)


def test_nan_on_one_rank_stops_every_rank_with_one_line(tmp_path):
    plug = tmp_path / "plug"
    plug.mkdir()
    (plug / "ganhub_test_rank_nan.py").write_text(NAN_PLUGIN)
    info = plug / "ganhub_test_rank_nan-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ganhub-test-rank-nan\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ganhub.variants]\nrank-nan = ganhub_test_rank_nan:variant\n")
    logs = tmp_path / "logs"
    p = torchrun(["-m", "ganhub.cli", "train", "rank-nan", "--dataset", "ring8", "--steps", "50", "--out", "nan",
                  "--set", "z_dim=4", "--batch-size", "8", "--quiet"], tmp_path, _env(plug), logs)
    assert p.returncode != 0, p.stdout + p.stderr
    errs = []
    for rank in (0, 1):
        found = list(logs.glob(f"*/attempt_0/{rank}/stderr.log"))
        assert len(found) == 1, f"no stderr log for rank {rank} under {logs}"
        errs.append(found[0].read_text())
        assert "Traceback" not in errs[-1], f"rank {rank} printed a traceback:\n{errs[-1]}"
    # every rank raised the same agreed error; rank 0 alone prints it, so the user reads one line
    lines = [ln for ln in errs[0].splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: training diverged at step 1"), errs[0]
    assert "NaN" in lines[0] and "2 processes" in lines[0]
    assert errs[1].strip() == "", errs[1]
    # torchrun's summary lists both ranks with the CLI's exit code for user errors
    assert p.stderr.count("exitcode  : 2 ") == 2, p.stderr[-3000:]
