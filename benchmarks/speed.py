"""Training throughput and sampling latency, side by side in one run on this machine.

Training: the reference DCGAN of the seeds (Radford et al. 2015 as in pytorch/examples: z 100,
G 512-256-128, D 64-128-256, BatchNorm, 32x32x1, batch 128, Adam 2e-4 (0.5, 0.999), no EMA) on
Fashion-MNIST, trained by
  - a plain ~30-line PyTorch loop (`plain_loop` below), in fp32 and under bf16 autocast, and
  - ganhub's phase runner (ganhub.step.PhaseRunner, the iteration ganhub.train runs) on the very same
    networks (an in-benchmark Variant), in fp32 and bf16, and the whole ganhub.train.train() loop at
    precision "auto" (data order, logging, events; EMA off, checkpoints out of the timed window).
Configurations alternate within each repeat (rotated order) so a busy machine slows all alike; the
table shows medians over the repeats and each row's ratio to the plain fp32 loop of the same repeat.
img/CPU-s (images per CPU-second of this process) is steadier than img/s when others share the CPU.

Sampling: each bundled model's 64-image grid (ganhub.sample.sample(G, 64) + to_grid), median of runs.

    python benchmarks/speed.py                      # both parts, 3 repeats (minutes on 2 cores)
    python benchmarks/speed.py --part train --experiments --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ganhub.data import load_dataset
from ganhub.errors import GanhubError
from ganhub.losses import bce_d, nonsaturating_g
from ganhub.precision import native_bf16, resolve
from ganhub.step import Optimizers, PhaseRunner
from ganhub.variant import BaseConfig, Variant

GOAL_RATIO, GOAL_MS = 1.5, 30.0


# ---------------------------------------------------------------- the reference networks (both loops use them)
class RefG(nn.Module):
    def __init__(self, z_dim: int = 100):
        super().__init__()
        self.z_dim, self.num_classes = z_dim, 0
        self.net = nn.Sequential(
            nn.ConvTranspose2d(z_dim, 512, 4, 1, 0, bias=False), nn.BatchNorm2d(512), nn.ReLU(True),  # -> (B, 512, 4, 4)
            nn.ConvTranspose2d(512, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU(True),  # -> (B, 256, 8, 8)
            nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(True),  # -> (B, 128, 16, 16)
            nn.ConvTranspose2d(128, 1, 4, 2, 1, bias=False), nn.Tanh())  # -> (B, 1, 32, 32)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, z_dim) -> (B, 1, 32, 32)
        return self.net(z[:, :, None, None])


class RefD(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),  # -> (B, 64, 16, 16)
            nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2, True),  # -> 8x8
            nn.Conv2d(128, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.LeakyReLU(0.2, True),  # -> 4x4
            nn.Conv2d(256, 1, 4, 1, 0, bias=False))  # -> (B, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 32, 32) -> (B,) logits
        return self.net(x).flatten()


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def nets(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    G, D = RefG(), RefD()
    G.apply(_init)
    D.apply(_init)
    return G.train(), D.train()


# ---------------------------------------------------------------- the plain PyTorch loop (pytorch/examples' dcgan)
def plain_loop(G, D, data: Callable[[], torch.Tensor], bf16: bool, batch: int) -> Callable[[int], None]:
    """The plain loop on (G, D): returns run(steps), which trains `steps` more iterations."""
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    ones, zeros = torch.ones(batch), torch.zeros(batch)
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def run(steps: int) -> None:
        for _ in range(steps):
            real = data()
            z = torch.randn(batch, 100)
            with amp():  # D step on real and (detached) fakes
                fake = G(z)
                loss_D = (F.binary_cross_entropy_with_logits(D(real), ones)
                          + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
            opt_D.zero_grad()
            loss_D.backward()
            opt_D.step()
            with amp():  # G step on the same fakes (non-saturating loss)
                loss_G = F.binary_cross_entropy_with_logits(D(fake), ones)
            opt_G.zero_grad()
            loss_G.backward()
            opt_G.step()
            _ = (loss_D.item(), loss_G.item())  # a real loop logs them

    return run


# ---------------------------------------------------------------- the same nets as a ganhub variant
@dataclass
class RefConfig(BaseConfig):
    z_dim: int = 100
    batch_size: int = 128
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    ema_half_life_kimg: float = 0.0
    augment: str = "off"


def _loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    if phase == "D":
        loss = bce_d(D(real), D(fake))
        return loss, {"loss_D": loss.item()}
    loss = nonsaturating_g(D(fake))
    return loss, {"loss_G": loss.item()}


REF = Variant(name="ref-dcgan", summary="The seeds' reference DCGAN (benchmark only).", config_cls=RefConfig,
              build=lambda cfg: nets(0), loss=_loss)


class _Batches:
    def __init__(self, data: Callable[[], torch.Tensor]):
        self.data = data

    def next(self) -> tuple[torch.Tensor, None]:
        return self.data(), None


def ganhub_loop(G, D, data, precision: str, batch: int, *, fused: bool = False,
                channels_last: bool = False) -> Callable[[int], None]:
    """ganhub's PhaseRunner on (G, D): returns run(steps), which trains `steps` more iterations."""
    cfg = RefConfig(batch_size=batch)
    kw = {"fused": True} if fused else {}
    if channels_last:
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
        base = data
        data = lambda: base().contiguous(memory_format=torch.channels_last)  # noqa: E731
    opts = Optimizers(torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas, **kw),
                      torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas, **kw))
    runner = PhaseRunner(REF, cfg, G, D, opts, device="cpu", precision=precision)
    batches, done = _Batches(data), [0]

    def run(steps: int) -> None:
        for _ in range(steps):
            runner.run(batches, done[0])
            done[0] += 1

    return run


def ganhub_train_loop(ds_name: str, limit: int, warmup: int, steps: int, batch: int) -> tuple[float, float]:
    """(img/s, img/CPU-s) of ganhub.train.train() between the step events `warmup` and `warmup + steps`."""
    from ganhub.train import train

    out = Path(tempfile.mkdtemp(prefix="ganhub-speed-")) / "run"
    try:
        marks = {}
        total = warmup + steps
        for ev in train(REF, dataset=ds_name, limit=limit, steps=total, out=out, seed=0, batch_size=batch,
                        precision="auto", device="cpu", preview_every=10**6, checkpoint_every=10**6, tensorboard=False):
            if ev.kind == "step" and ev.step in (warmup, total):
                marks[ev.step] = (time.perf_counter(), time.process_time())
        (t0, c0), (t1, c1) = marks[warmup], marks[total]
        return steps * batch / (t1 - t0), steps * batch / (c1 - c0)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


# ---------------------------------------------------------------- measurement
def timed(fn: Callable[[int], None], warmup: int, steps: int, batch: int) -> tuple[float, float]:
    """(img/s of wall time, img per CPU-second of this process) of fn(steps) after fn(warmup): real images,
    one D step per iteration. CPU time is steadier than wall time on a shared machine."""
    fn(warmup)
    t, c = time.perf_counter(), time.process_time()
    fn(steps)
    return steps * batch / (time.perf_counter() - t), steps * batch / (time.process_time() - c)


def bench_train(args: argparse.Namespace) -> list[tuple[str, float, float, float]]:
    ds = load_dataset("fashion-mnist", resolution=32, channels=1, limit=args.limit)
    gen = torch.Generator().manual_seed(0)
    b = args.batch

    def data() -> torch.Tensor:
        return ds.batch(torch.randint(len(ds), (b,), generator=gen))[0]

    def row(make: Callable) -> Callable[[], tuple[float, float]]:
        def measure() -> tuple[float, float]:
            G, D = nets(0)  # fresh nets per measurement; warm-up and timed steps share nets and optimisers
            return timed(make(G, D), args.warmup, args.steps, b)

        return measure

    rows: dict[str, Callable[[], tuple[float, float]]] = {
        "plain fp32": row(lambda G, D: plain_loop(G, D, data, False, b)),
        "plain bf16": row(lambda G, D: plain_loop(G, D, data, True, b)),
        "ganhub fp32": row(lambda G, D: ganhub_loop(G, D, data, "fp32", b)),
        "ganhub bf16": row(lambda G, D: ganhub_loop(G, D, data, "bf16", b)),
    }
    if args.experiments:
        for prec in ("fp32", "bf16"):
            rows[f"ganhub {prec} channels_last"] = row(
                lambda G, D, p=prec: ganhub_loop(G, D, data, p, b, channels_last=True))
        rows["ganhub fp32 fused Adam"] = row(lambda G, D: ganhub_loop(G, D, data, "fp32", b, fused=True))
        rows["ganhub fp32 ch_last+fused"] = row(
            lambda G, D: ganhub_loop(G, D, data, "fp32", b, channels_last=True, fused=True))
    if not args.no_loop:
        rows["ganhub train() auto"] = lambda: ganhub_train_loop("fashion-mnist", args.limit, args.warmup, args.steps, b)

    names = list(rows)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        got = {}
        for name in order:
            got[name] = rows[name]()
            print(f"  repeat {r + 1}/{args.repeats}  {name:<28} {got[name][0]:7.1f} img/s  "
                  f"{got[name][1]:7.1f} img/CPU-s", flush=True)
        for name in names:
            wall[name].append(got[name][0])
            cpu[name].append(got[name][1])
            ratios[name].append(got[name][0] / got["plain fp32"][0])
    return [(n, statistics.median(wall[n]), statistics.median(ratios[n]), statistics.median(cpu[n])) for n in names]


def bench_sample(args: argparse.Namespace) -> list[tuple[str, float]]:
    from ganhub.sample import sample, to_grid
    from ganhub.source import bundled, load_generator

    out = []
    for name in bundled():
        try:
            G = load_generator(name, device="cpu").G
        except GanhubError as e:  # a broken plugin: say so, time the others
            print(f"  {name:<30} skipped: {e}", flush=True)
            continue
        module = sys.modules[type(G).__module__]
        # --experiments: a plugin with a CHANNELS_LAST switch (stylegan-lite) is also timed with it off, interleaved
        layouts = [True, False] if args.experiments and hasattr(module, "CHANNELS_LAST") else [None]
        ms: dict = {layout: [] for layout in layouts}
        default = getattr(module, "CHANNELS_LAST", None)
        try:
            for i in range(3 + args.sample_runs):  # 3 warm-up rounds, then timed ones
                for layout in layouts:
                    if layout is not None:
                        module.CHANNELS_LAST = layout
                    t = time.perf_counter()
                    to_grid(sample(G, 64, seed=i), nrow=8)
                    if i >= 3:
                        ms[layout].append((time.perf_counter() - t) * 1000)
        finally:
            if default is not None:
                module.CHANNELS_LAST = default
        for layout in layouts:
            label = name + {None: "", True: " (channels_last)", False: " (NCHW)"}[layout]
            out.append((label, statistics.median(ms[layout])))
            print(f"  {label:<30} {out[-1][1]:7.1f} ms", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("all", "train", "sample"), default="all")
    ap.add_argument("--steps", type=int, default=10, help="timed iterations per configuration and repeat")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--limit", type=int, default=10_000, help="Fashion-MNIST images loaded")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--experiments", action="store_true", help="also channels_last and fused Adam rows, and stylegan-lite sampled in NCHW")
    ap.add_argument("--no-loop", action="store_true", help="skip the full ganhub.train.train() row")
    ap.add_argument("--sample-runs", type=int, default=9)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU bf16 native: {native_bf16('cpu')}")
    if args.part in ("all", "train"):
        print(f"training: reference DCGAN, batch {args.batch}, {args.warmup} warm-up + {args.steps} timed "
              f"iterations, {args.repeats} repeats")
        table = bench_train(args)
        print(f"\n{'training (median of repeats)':<30}{'img/s':>9}{'x plain fp32':>14}{'img/CPU-s':>11}")
        for name, ips, ratio, cps in table:
            print(f"{name:<30}{ips:9.1f}{ratio:13.2f}x{cps:11.1f}")
        # judged on what a user gets: the whole loop at the default precision (not the best of many noisy rows)
        auto = f"ganhub {resolve('auto', 'cpu')}"
        name, ratio = next((n, r) for n, _, r, _ in table if n == ("ganhub train() auto" if not args.no_loop else auto))
        print(f"goal: ganhub >= {GOAL_RATIO}x plain fp32 -> {name}: {ratio:.2f}x {'PASS' if ratio >= GOAL_RATIO else 'FAIL'}"
              f" (precision auto = {resolve('auto', 'cpu')} here)")
    if args.part in ("all", "sample"):
        print("\nsampling: 64-image grid per bundled model (median)")
        rows = bench_sample(args)
        worst = max((ms for n, ms in rows if not n.endswith("(NCHW)")), default=0.0)  # the shipped layout
        print(f"goal: every grid <= {GOAL_MS:.0f} ms -> worst {worst:.1f} ms {'PASS' if worst <= GOAL_MS else 'FAIL'}")


if __name__ == "__main__":
    main()
