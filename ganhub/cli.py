"""`ganhub list|train|sample|eval|push|pull`: the command line, on the same public API as the app.

User errors (GanhubError) print one line `error: ...` and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ganhub import __version__, registry
from ganhub.errors import ConfigError, GanhubError


def cmd_list(args: argparse.Namespace) -> int:
    entries, failures = registry.entries(), registry.failures()
    if args.json:
        print(json.dumps({
            "variants": [{"name": e.name, "package": e.package, "version": e.version, "summary": e.summary,
                          "modalities": list(e.variant.modalities)} for e in entries],
            "failures": [{"entry_point": f.entry_point, "package": f.package, "version": f.version, "error": f.error}
                         for f in failures],
        }, indent=2))
        return 0
    width = max((len(e.name) for e in entries), default=4)
    for e in entries:
        print(f"{e.name:<{width}}  {e.package} {e.version}  {e.summary}")
    if not entries:
        print("no variants installed; `pip install ganhub-dcgan` (or any ganhub.variants plugin)")
    for f in failures:
        print(f"FAILED {f.entry_point}  ({f.package} {f.version}): {f.error}")
    return 0


def parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        for item in pair.split() if " " in pair.strip() else [pair]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--set expects key=value, got {item!r}")
            out[key.strip()] = value.strip()
    return out


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise): only rank 0 talks."""
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ganhub.run import RunFolder
    from ganhub.train import train

    events = train(
        args.variant, dataset=args.dataset, steps=args.steps, out=args.out, seed=args.seed,
        batch_size=args.batch_size, overrides=parse_sets(args.set), device=args.device, resume=args.resume,
        preview_every=args.preview_every, checkpoint_every=args.checkpoint_every, limit=args.limit,
        precision=args.precision, sync_bn=args.sync_bn,
    )
    bar = None
    try:
        for ev in events:
            if ev.kind == "start":
                bar = tqdm(total=ev.total, initial=ev.step, unit="step", dynamic_ncols=True, disable=args.quiet)
                tqdm.write(ev.message)
            elif ev.kind == "step" and bar is not None:
                bar.update(ev.step - bar.n)
                shown = {k: f"{x:.3g}" for k, x in list(ev.losses.items())[:4]}
                bar.set_postfix(shown | {"img/s": f"{ev.images_per_s:.0f}"}, refresh=False)
            elif ev.kind == "warning":
                tqdm.write(f"warning: step {ev.step}: {ev.message}")
            elif ev.kind == "done":
                if bar is not None:
                    bar.close()
                print(ev.message)
    except KeyboardInterrupt as e:
        if bar is not None:
            bar.close()
        if getattr(e, "ganhub_all_ranks", False):
            args.exit_together = True
        if _rank() == 0:
            step = RunFolder(args.out).checkpoint_step()
            print(f"interrupted; the checkpoint in {args.out} (step {step}) is kept: continue with --resume" if step is not None
                  else f"interrupted before the first checkpoint; there is nothing to resume in {args.out}", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from ganhub.sample import class_grid, save_grid, write_samples
    from ganhub.source import load_generator

    if args.n is not None and args.grid_per_class is not None:
        raise ConfigError("--n and --grid-per-class exclude each other: a class grid has per-class x classes images")
    if args.grid_per_class is not None and args.class_ is not None:
        raise ConfigError("--class and --grid-per-class exclude each other: the grid shows every class")
    if args.grid_per_class is not None and not str(args.out).lower().endswith(".png"):
        raise ConfigError(f"--grid-per-class writes one grid: give --out a path ending in .png, got {args.out!r}")
    loaded = load_generator(args.source, device=args.device)
    k = int(getattr(loaded.G, "num_classes", 0) or 0)
    if (args.class_ is not None or args.grid_per_class is not None) and not k:
        raise ConfigError(f"{args.source} is unconditional (no classes); drop --class / --grid-per-class")
    if args.class_ is not None and not 0 <= args.class_ < k:
        raise ConfigError(f"--class must be from 0 to {k - 1} for {args.source}, got {args.class_}")
    if args.grid_per_class is not None:
        path = save_grid(class_grid(loaded.G, args.grid_per_class, args.seed, truncation=args.truncation), Path(args.out))
        print(f"wrote a {k}-class grid of {loaded.name} ({args.grid_per_class} per class, seed {args.seed}) to {path}")
        return 0
    n = 64 if args.n is None else args.n
    path = write_samples(loaded.G, n, args.seed, args.out, truncation=args.truncation, labels=args.class_)
    which = f" of class {args.class_}" if args.class_ is not None else ""
    print(f"wrote {n} samples{which} of {loaded.name} (seed {args.seed}) to {path}")
    return 0


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors also exit 2 with one line
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ganhub", description="Train, sample, evaluate and share GANs; every variant is a plugin.")
    p.add_argument("--version", action="version", version=f"ganhub {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    s = sub.add_parser("list", help="installed variants and plugins that failed to load")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("train", help="train a variant; writes a run folder")
    s.add_argument("variant")
    s.add_argument("--dataset", help="fashion-mnist, mnist, cifar10, ring8, grid25, a folder or a .zip of images "
                   "(one subfolder per class gives labels); a resumed run keeps its own")
    s.add_argument("--steps", type=int, required=True, help="total G updates of the run folder (resume continues up to it)")
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--seed", type=int, help="default 0 (a resumed run keeps its own)")
    s.add_argument("--batch-size", type=int, help="per process (the global batch is this x processes)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    s.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    s.add_argument("--resume", action="store_true", help="continue the run in --out up to --steps")
    s.add_argument("--limit", type=int, help="use only the first N images of the dataset")
    s.add_argument("--preview-every", type=int)
    s.add_argument("--checkpoint-every", type=int)
    s.add_argument("--precision", choices=["auto", "bf16", "fp32"],
                   help="auto (default): bf16 autocast where the hardware does bf16 natively, else fp32")
    s.add_argument("--sync-bn", action="store_true", default=None,
                   help="SyncBatchNorm across processes (torchrun on GPUs; no effect in one process)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="sample images from a run folder, weights name or Hub repo")
    s.add_argument("source", nargs="?", default="dcgan",
                   help="run folder, bundled weights name (default: dcgan) or Hub repo id user/repo[@revision]")
    s.add_argument("--n", type=int, help="number of samples (default 64)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--truncation", type=float, default=1.0, help="psi < 1 trades diversity for quality (mapping networks only)")
    s.add_argument("--class", dest="class_", type=int, metavar="K", help="draw class K (conditional generators)")
    s.add_argument("--grid-per-class", type=int, metavar="N", help="one grid row per class, N samples each (a .png)")
    s.add_argument("--out", required=True, help="a .png grid, or a directory of PNGs (any --n, streamed)")
    s.add_argument("--device")
    s.set_defaults(func=cmd_sample)

    for module in ("ganhub.hub", "ganhub.metrics"):  # subcommands owned by their modules
        try:
            mod = __import__(module, fromlist=["add_cli"])
        except ImportError:
            continue
        if hasattr(mod, "add_cli"):
            mod.add_cli(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        if code == 0 or getattr(args, "exit_together", False):  # a finished run, or a stop every rank agreed on
            return _exit_together(code)
        _leave_process_group()  # a rank interrupted on its own: a barrier could wait for ever
        return code
    except GanhubError as e:
        if _rank() == 0:  # under torchrun every rank raises the same agreed error: one line, from rank 0
            print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return _exit_together(2) if getattr(e, "ganhub_all_ranks", False) else 2
    except KeyboardInterrupt:  # Ctrl-C outside training (imports, loading, sampling): no traceback
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a path the user gave that cannot be read or written
        if _rank() == 0:
            where = f"{e.filename}: " if e.filename else ""
            print(f"error: {where}{e.strerror or e}; check the path and its permissions", file=sys.stderr)
        return 2


def _exit_together(code: int) -> int:
    """Under torchrun, every rank leaves at the same instant and without the interpreter's teardown; elsewhere
    this returns `code`. At the same instant: torchrun kills the ranks still running when one exits with an
    error, which would turn their exit code into SIGTERM. Without teardown: gloo's threads can abort a rank
    that is being torn down ("terminate called without an active exception"), even after
    destroy_process_group, turning a finished run into a failed one (seen once in a full CI run, in a
    two-process test). All work is on disk by now, rank 0's checkpoint agreed by every rank, and no
    collective is in flight after the barrier."""
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    torch.distributed.barrier()
    os._exit(code)


def _leave_process_group() -> None:
    """Leave the process group on this rank alone (no barrier: the other ranks may not come)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
