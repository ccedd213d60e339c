"""`ganhub list|train|sample|eval|push|pull`: the command line, on the same public API as the app.

User errors (GanhubError) print one line `error: ...` and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
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


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ganhub.train import train

    events = train(
        args.variant, dataset=args.dataset, steps=args.steps, out=args.out, seed=args.seed,
        batch_size=args.batch_size, overrides=parse_sets(args.set), device=args.device, resume=args.resume,
        preview_every=args.preview_every, checkpoint_every=args.checkpoint_every, limit=args.limit,
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
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print(f"interrupted; the last checkpoint in {args.out} is kept: continue with --resume", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from ganhub.sample import sample, save_images
    from ganhub.source import load_generator

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    loaded = load_generator(args.source, device=args.device)
    images = sample(loaded.G, args.n, args.seed, truncation=args.truncation)
    path = save_images(images, args.out)
    print(f"wrote {args.n} samples of {loaded.name} (seed {args.seed}) to {path}")
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
    s.add_argument("--dataset", required=True, help="fashion-mnist, mnist, cifar10, ring8, grid25, a folder or a .zip of images")
    s.add_argument("--steps", type=int, required=True, help="total G updates of the run folder (resume continues up to it)")
    s.add_argument("--out", required=True, type=Path, help="run folder")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    s.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    s.add_argument("--resume", action="store_true", help="continue the run in --out up to --steps")
    s.add_argument("--limit", type=int, help="use only the first N images of the dataset")
    s.add_argument("--preview-every", type=int)
    s.add_argument("--checkpoint-every", type=int)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="sample images from a run folder, weights name or Hub repo")
    s.add_argument("source", nargs="?", default="dcgan",
                   help="run folder, bundled weights name (default: dcgan) or Hub repo id user/repo[@revision]")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--truncation", type=float, default=1.0, help="psi < 1 trades diversity for quality (mapping networks only)")
    s.add_argument("--out", required=True, help="a .png grid, or a directory of PNGs")
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
        return int(args.func(args) or 0)
    except GanhubError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
