"""Quality per CPU-minute: train for a fixed wall-clock budget, report images/s, write a sample grid.

Runs ganhub's defaults side by side with a reference recipe (by default the plain DCGAN of Radford et
al. 2015: 64-channel networks, no EMA) for the same budget, one after the other on the same machine,
and reports the throughput ratio; with --fid it also measures FID with the shipped Fashion-MNIST
extractor (ganhub.metrics), so "better samples" is a number, not an impression.

    python benchmarks/train_budget.py --variant dcgan --minutes 5 --out runs/bench
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from pathlib import Path

import torch

from ganhub.train import train

REFERENCES = {  # the paper recipes, as config overrides of ganhub's variants
    "dcgan": {"g_width": 64, "d_width": 64, "ema_half_life_kimg": 0.0, "batch_size": 128},
}


def run(variant: str, overrides: dict, minutes: float, out: Path, seed: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    stop = threading.Event()
    timer = threading.Timer(minutes * 60, stop.set)
    t0 = time.time()
    timer.start()
    last = None
    try:
        for ev in train(variant, dataset="fashion-mnist", steps=10**9, out=out, seed=seed, overrides=overrides,
                        stop=stop, checkpoint_every=10**9, preview_every=10**9, command="benchmarks/train_budget.py"):
            if ev.kind in ("step", "done"):
                last = ev
    finally:
        timer.cancel()
    wall = time.time() - t0
    cfg = json.loads((out / "config.json").read_text())["config"]
    images = last.step * cfg["batch_size"] * cfg["n_critic"]
    return {"variant": variant, "overrides": overrides, "steps": last.step, "real_images_seen": images,
            "wall_s": round(wall, 1), "images_per_s": round(images / wall, 1), "grid": str(out / "samples.png")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="dcgan")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--fid", action="store_true", help="also measure FID/KID with the fmnist extractor (n=5000)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [run(args.variant, {}, args.minutes, args.out / f"{args.variant}-default", args.seed)]
    if not args.no_reference and args.variant in REFERENCES:
        results.append(run(args.variant, REFERENCES[args.variant], args.minutes, args.out / f"{args.variant}-reference", args.seed))
    if args.fid:
        from ganhub.metrics import evaluate

        for r in results:
            m = evaluate(Path(r["grid"]).parent, metrics=("fid", "kid"), n=5000)
            r["fid"] = m["metrics"]["fid"]["value"]
            r["kid"] = m["metrics"]["kid"]["value"]
    for r in results:
        print(json.dumps(r))
    if len(results) == 2:
        print(f"throughput ratio default/reference: {results[0]['images_per_s'] / results[1]['images_per_s']:.2f}x")


if __name__ == "__main__":
    main()
