"""Print the README's comparison table of the bundled weights/ from measurements, never by hand.

    python scripts/weights_table.py            # reads metrics recorded by `ganhub eval ... --write`
Training time is what each config.json recorded (CPU time of the training process, wall-clock in
brackets). Parameter counts are counted; sampling time is the median of 5 timed runs of 64 images on this machine
(after one warm-up), measured now.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from ganhub.run import RunFolder
from ganhub.sample import sample
from ganhub.source import load_generator

ROOT = Path(__file__).resolve().parent.parent / "weights"
ORDER = ["vanilla", "dcgan", "wgan-gp", "sngan", "sngan-cond", "stylegan-lite"]


def fmt(metrics: dict, key: str, digits: int = 2) -> str:
    m = metrics.get(key)
    return f"{m['value']:.{digits}f}" if m and m.get("value") is not None else "–"


def cost(meta: dict) -> str:
    """Training time as recorded in config.json: CPU time (wall-clock), or – for weights trained before ganhub
    recorded it."""
    c = meta.get("compute") or {}
    if not isinstance(c.get("wall_seconds"), (int, float)):
        return "–"
    cpu = f"{c['cpu_seconds'] / 60:.0f} min" if isinstance(c.get("cpu_seconds"), (int, float)) else "?"
    return f"{cpu} ({c['wall_seconds'] / 60:.0f} min)"


def main() -> None:
    rows = []
    for name in ORDER:
        folder = RunFolder(ROOT / name)
        if not folder.is_run():
            continue
        loaded = load_generator(ROOT / name, device="cpu")
        params = sum(p.numel() for p in loaded.G.parameters())
        sample(loaded.G, 64, seed=0)
        times = []
        for i in range(5):
            t = time.perf_counter()
            sample(loaded.G, 64, seed=i)
            times.append(time.perf_counter() - t)
        m = folder.metrics
        cov = m.get("coverage", {})
        rows.append(
            f"| `{name}` | {folder.step:,} | {cost(folder.meta)} | {fmt(m, 'fid')} | {fmt(m, 'kid', 1)} | {fmt(m, 'precision')} | "
            f"{fmt(m, 'recall')} | {cov.get('value', {}).get('classes', '–') if isinstance(cov.get('value'), dict) else '–'} | "
            f"{fmt(m, 'class_kl', 3)} | {params / 1e6:.2f} M | {statistics.median(times) * 1000:.0f} ms |"
        )
    print("| variant | steps | CPU time (wall) | FID ↓ | KID ↓ | precision ↑ | recall ↑ | classes | class KL ↓ | G params | 64 samples (CPU, "
          f"{torch.get_num_threads()} threads) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
