"""Does torch.compile speed up ganhub's loop on this CPU? The reference DCGAN of speed.py, trained by
ganhub's PhaseRunner (fp32, channels_last) with and without torch.compile on G and D, alternating, two
repeats; prints the compile warm-up (first 3 iterations) and img/CPU-s of the next 10.

    python benchmarks/compile.py            # one thread: steady when others share the CPU

On the project's 2-core Xeon: 144-147 img/CPU-s eager vs 140-146 compiled (three runs) (about 50 s of compiling the
first time; inductor's cache makes later runs start in seconds); so ganhub does not compile (README).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import torch

from ganhub.data import load_dataset

# the reference nets and loops of speed.py, beside this file (benchmarks/ is not a package)
_spec = importlib.util.spec_from_file_location("speed", Path(__file__).resolve().parent / "speed.py")
speed = sys.modules["speed"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(speed)


def main() -> None:
    torch.set_num_threads(1)
    ds = load_dataset("fashion-mnist", resolution=32, channels=1, limit=5000)
    gen = torch.Generator().manual_seed(0)

    def data() -> torch.Tensor:
        return ds.batch(torch.randint(len(ds), (128,), generator=gen))[0]

    for _ in range(2):
        for compiled in (False, True):
            G, D = speed.nets(0)
            if compiled:
                G, D = torch.compile(G), torch.compile(D)
            t0 = time.perf_counter()
            run = speed.ganhub_loop(G, D, data, "fp32", 128, channels_last=True)
            run(3)
            warm = time.perf_counter() - t0
            c0 = time.process_time()
            run(10)
            print(f"compiled={compiled!s:<5}  warm-up {warm:5.1f} s  {10 * 128 / (time.process_time() - c0):6.1f} img/CPU-s",
                  flush=True)


if __name__ == "__main__":
    main()
