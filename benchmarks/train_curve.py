"""Quality within one run: train a variant for `--steps`, scoring its EMA generator every `--every` steps.

A single end-of-run FID hides whether a recipe is still improving, has peaked or is degrading; this
prints the curve. Each checkpoint's generator (config.json + model.safetensors, and samples.png) is kept
as `<out>/at-<step>` so any point can be sampled, evaluated further or shipped (scripts/ship_checkpoint.sh),
and scored with the shipped Fashion-MNIST extractor (FID, n = 5,000 generated against a fixed 5,000 of
the test images; the class mix).

    python benchmarks/train_curve.py --variant dcgan --steps 3200 --every 400
    python benchmarks/train_curve.py --variant dcgan --steps 3200 --every 400 --set r1_gamma=0   # a lever
    python benchmarks/train_curve.py --steps 6400 --every 400 --out runs/curve --resume   # the same run, further
    python benchmarks/train_curve.py --limit 500 --steps 12800 --every 800 --ada-kimg 100   # ADA's speed, 5x

`--ada-kimg` sets ganhub.augment.ADA_KIMG (how fast adaptive augmentation's p may move: at most 1 per that
many thousand images) for this process. It is a module constant, not a config field, so a run's folder
does not record it: pass it again with `--resume`.

Steps, not minutes, are the axis, so two curves can run side by side (`--threads 1` each) without the
machine's load changing what they measure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

import ganhub.augment
from ganhub.cli import parse_sets
from ganhub.errors import GanhubError
from ganhub.metrics import evaluate
from ganhub.train import train

FID_N = 5000
KEEP = ("config.json", "model.safetensors", "samples.png")  # a generator folder, with the grid training drew


def curve(variant: str | None, steps: int, every: int, out: Path, *, seed: int | None = None,
          overrides: dict | None = None, precision: str | None = None, limit: int | None = None, fid_n: int = FID_N,
          resume: bool = False):
    """Yields {"step", "fid", "class_kl", "elapsed_s", "folder"} at every checkpoint of a fresh run in `out`
    (variant None = dcgan), or with `resume` of the run already in `out` continued up to `steps` (its recorded
    variant, seed, config and precision; the earlier at-<step> folders are kept, elapsed_s counts this leg)."""
    run = out / "run"
    if not resume:
        shutil.rmtree(out, ignore_errors=True)
        variant, seed, precision = variant or "dcgan", 0 if seed is None else seed, precision or "auto"
    t0, scoring = time.time(), 0.0
    for ev in train(variant, dataset=None if resume else "fashion-mnist", steps=steps, out=run, seed=seed,
                    overrides=overrides or {}, limit=limit, precision=precision, resume=resume,
                    checkpoint_every=every, preview_every=10**9):
        if ev.kind != "checkpoint":
            continue
        t_ckpt = time.time()
        elapsed = t_ckpt - t0 - scoring  # training time so far: earlier checkpoints' scoring left out
        at = out / f"at-{ev.step}"
        at.mkdir(exist_ok=resume)
        for name in KEEP:
            shutil.copy2(run / name, at / name)
        m = evaluate(at, metrics=("fid", "coverage"), n=fid_n, seed=0)["metrics"]
        scoring += time.time() - t_ckpt
        yield {"step": ev.step, "fid": round(m["fid"]["value"], 2), "class_kl": round(m["coverage"]["value"]["kl"], 4),
               "elapsed_s": round(elapsed, 1), "folder": str(at)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", help="default: dcgan (with --resume: the run's)")
    ap.add_argument("--steps", type=int, default=3200)
    ap.add_argument("--every", type=int, default=400, help="score a checkpoint every this many steps (default 400)")
    ap.add_argument("--out", type=Path, default=Path("runs/curve"))
    ap.add_argument("--seed", type=int, help="default: 0 (with --resume: the run's)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--limit", type=int, help="train on the first N training images")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), help="default: auto (with --resume: the run's)")
    ap.add_argument("--resume", action="store_true",
                    help="continue the run in --out up to --steps, keeping its earlier at-<step> folders")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    ap.add_argument("--fid-n", type=int, default=FID_N, help=f"generated samples per FID (default {FID_N})")
    ap.add_argument("--ada-kimg", type=float,
                    help=f"ganhub.augment.ADA_KIMG for this run (default {ganhub.augment.ADA_KIMG:g})")
    args = ap.parse_args(argv)
    if args.steps < 1 or not 1 <= args.every <= args.steps:
        ap.error(f"need --steps >= 1 and 1 <= --every <= --steps, got --steps {args.steps} --every {args.every}")
    if args.fid_n < 2:
        ap.error(f"--fid-n must be at least 2, got {args.fid_n}")
    if args.ada_kimg is not None and not args.ada_kimg > 0:
        ap.error(f"--ada-kimg must be positive, got {args.ada_kimg}")
    if args.threads:
        torch.set_num_threads(args.threads)
    kimg = ganhub.augment.ADA_KIMG
    if args.ada_kimg is not None:
        ganhub.augment.ADA_KIMG = args.ada_kimg  # read by AdaptiveAugment when train() builds it
    points = []
    try:
        for p in curve(args.variant, args.steps, args.every, args.out, seed=args.seed, overrides=parse_sets(args.set),
                       precision=args.precision, limit=args.limit, fid_n=args.fid_n, resume=args.resume):
            points.append(p)
            print(json.dumps(p), flush=True)
    except GanhubError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        ganhub.augment.ADA_KIMG = kimg  # for callers in this process (tests)
    if not points:
        print(f"no new checkpoint: {args.out / 'run'} is already at step {args.steps} or beyond", file=sys.stderr)
        return 2
    best = min(points, key=lambda p: p["fid"])
    print(f"best FID {best['fid']} at step {best['step']}; last {points[-1]['fid']} at step {points[-1]['step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
