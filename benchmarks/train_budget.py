"""Quality per CPU-minute: train for a fixed wall-clock budget, then measure FID and write a 36-image grid.

Runs ganhub's defaults for a variant for `--minutes` of wall-clock time on Fashion-MNIST, then reports
steps, images/s, FID with the shipped Fashion-MNIST extractor (ganhub.metrics, n = 5,000 generated against
a fixed 5,000 of the test images) and the path of a 6 x 6 grid of the EMA generator (seed 0). By default a
reference recipe runs after it for the same budget, one after the other on the same machine:
  - full data: the plain DCGAN of Radford et al. 2015 (64-channel networks, no EMA);
  - small data (`--small`, or `--limit N`): the same defaults with augmentation off, i.e. what DiffAugment
    at adaptive strength (on by the "auto" rule below 5,000 images, ganhub.augment) buys on a few hundred
    images within the budget.

    python benchmarks/train_budget.py --variant dcgan --minutes 5 --out runs/bench
    python benchmarks/train_budget.py --variant dcgan --minutes 5 --small   # 500-image subset
    python benchmarks/train_budget.py --variant dcgan --minutes 5 --no-reference --set lr_d=4e-4  # a lever
    python benchmarks/train_budget.py --variant dcgan --minutes 5 --seeds 0,1   # every recipe under two seeds

Five-minute FIDs of one recipe differ by 10-20 between seeds (README "Benchmarks"), so a lever is only
worth a default when it wins under several seeds: `--seeds` runs each recipe once per seed and prints
each recipe's mean, lowest and highest FID after the per-run lines.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from pathlib import Path

import torch

from ganhub.cli import parse_sets
from ganhub.device import pick_device
from ganhub.errors import GanhubError
from ganhub.precision import resolve as resolve_precision
from ganhub.run import RunFolder
from ganhub.sample import sample, save_images
from ganhub.source import load_generator
from ganhub.train import train

SMALL = 500  # images in the small-data mode (issue 16: "a few hundred of your own images")
FID_N = 5000
GRID_N, GRID_SEED = 36, 0
REFERENCES = {  # the paper recipes, as config overrides of ganhub's variants
    "dcgan": {"g_width": 64, "d_width": 64, "ema_half_life_kimg": 0.0, "batch_size": 128,
              "lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.5, 0.999)},
}
SMALL_REFERENCE = {"augment": "off"}


def run(variant: str, overrides: dict, minutes: float, out: Path, seed: int, limit: int | None,
        precision: str = "auto") -> dict:
    """Train for `minutes` of wall-clock time into a fresh `out`; returns what was done and where."""
    shutil.rmtree(out, ignore_errors=True)
    stop = threading.Event()
    timer = threading.Timer(minutes * 60, stop.set)
    t0 = time.time()
    timer.start()
    last = None
    try:
        events = train(
            variant,
            dataset="fashion-mnist",
            steps=10**9,
            out=out,
            seed=seed,
            overrides=overrides,
            stop=stop,
            limit=limit,
            precision=precision,
            checkpoint_every=10**9,
            preview_every=10**9,
        )
        for ev in events:
            if ev.kind in ("step", "done"):
                last = ev
    finally:
        timer.cancel()
    wall = time.time() - t0
    folder = RunFolder(out)
    cfg = folder.meta["config"]
    log = folder.read_log()
    steps = last.step if last is not None else 0
    images = steps * cfg["batch_size"] * cfg.get("n_critic", 1)  # real images D trained on
    return {
        "variant": variant,
        "seed": seed,
        "overrides": overrides,
        "dataset": f"fashion-mnist, first {limit} training images" if limit else "fashion-mnist",
        "augment": folder.spec.augment_policy,  # what train() resolved "auto" to on this data, as recorded
        # adaptive strength: p at the end
        **({"augment_p": log[-1]["augment_p"]} if log and "augment_p" in log[-1] else {}),
        "precision": f"{precision} ({resolve_precision(precision, pick_device())} here)",
        "steps": steps,
        "real_images_seen": images,
        "wall_s": round(wall, 1),
        "images_per_s": round(images / wall, 1),
        "folder": str(out),
    }


def measure(r: dict, fid_n: int) -> None:
    """FID with the shipped extractor and a 6 x 6 grid of the EMA generator, into `r`."""
    folder = Path(r["folder"])
    G = load_generator(folder, device="cpu").G
    r["grid"] = str(save_images(sample(G, GRID_N, GRID_SEED), folder / "grid36.png", nrow=6))
    if fid_n:
        from ganhub.metrics import evaluate

        m = evaluate(folder, metrics=("fid",), n=fid_n)["metrics"]["fid"]
        r["fid"] = round(m["value"], 2)
        r["fid_protocol"] = f"fmnist extractor, n={fid_n} generated vs {m['protocol']['n_real']} test images"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="dcgan")
    ap.add_argument("--minutes", type=float, default=5.0, help="wall-clock budget per run (default 5)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds; each recipe runs once per seed "
                    "(default 0)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--small", action="store_true", help=f"small-data mode: the first {SMALL} training images")
    ap.add_argument("--limit", type=int, help="train on the first N training images (--small = --limit 500)")
    ap.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                    help="training precision of every run (default auto, as `ganhub train`)")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference run")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field of the default run (repeatable): to measure a lever")
    ap.add_argument("--fid-n", type=int, default=FID_N, help=f"generated samples for FID (default {FID_N}; 0 = skip)")
    args = ap.parse_args(argv)
    if not args.minutes > 0 or args.minutes > 24 * 60:
        ap.error(f"--minutes must be in (0, 1440], got {args.minutes}")
    if args.limit is not None and args.limit < 1:
        ap.error(f"--limit must be a positive number of images, got {args.limit}")
    if args.fid_n < 0:
        ap.error(f"--fid-n must be 0 (skip) or a number of samples, got {args.fid_n}")
    try:
        seeds = [int(x) for x in args.seeds.split(",")]
    except ValueError:
        ap.error(f"--seeds must be comma-separated integers such as 0,1, got {args.seeds!r}")
    if len(set(seeds)) != len(seeds):
        ap.error(f"--seeds repeats a seed: {args.seeds}")
    limit = args.limit or (SMALL if args.small else None)
    if args.threads:
        torch.set_num_threads(args.threads)
    tag = f"{args.variant}-{limit}img" if limit else args.variant
    try:
        sets = parse_sets(args.set)
    except GanhubError as e:
        ap.error(str(e))
    recipes = [("default", sets, f"{tag}-{'-'.join(f'{k}={v}' for k, v in sets.items()) or 'default'}")]
    reference = SMALL_REFERENCE if limit else REFERENCES.get(args.variant)
    if reference and not args.no_reference:
        recipes.append(("reference", reference, f"{tag}-reference"))
    results: dict[str, list[dict]] = {name: [] for name, _, _ in recipes}
    try:
        for seed in seeds:  # seed-major: an interrupted benchmark still holds complete pairs
            for name, overrides, folder in recipes:
                out = args.out / (folder if len(seeds) == 1 else f"{folder}-seed{seed}")
                r = run(args.variant, overrides, args.minutes, out, seed, limit, args.precision)
                measure(r, args.fid_n)
                results[name].append(r)
                print(json.dumps(r), flush=True)
    except GanhubError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, rs in results.items():
        fids = [r["fid"] for r in rs if "fid" in r]
        if len(fids) > 1:
            print(f"{name}: FID mean {sum(fids) / len(fids):.1f} over seeds {','.join(str(r['seed']) for r in rs)} "
                  f"(lowest {min(fids)}, highest {max(fids)})")
    if len(results) == 2:
        a, b = results["default"], results["reference"]

        def mean(rs: list[dict], key: str) -> float:
            return sum(r[key] for r in rs) / len(rs)

        print(f"throughput ratio default/reference: {mean(a, 'images_per_s') / max(mean(b, 'images_per_s'), 1e-9):.2f}x")
        if all("fid" in r for r in a + b):
            print(f"FID default {mean(a, 'fid'):.1f} vs reference {mean(b, 'fid'):.1f} (lower is better"
                  + (f"; means over {len(seeds)} seeds)" if len(seeds) > 1 else ")"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
