"""Discover variants from the `ganhub.variants` entry-point group; validate; remember failures.

A plugin that fails to import or validate never breaks the others: whatever escapes its import
(an exception, `sys.exit()`, a stray KeyboardInterrupt or GeneratorExit it raised itself) is recorded
as a LoadFailure (entry point, distribution, version, error), shown by `ganhub list` and the app, and
`get(name)` for it says why it failed. A real Ctrl-C during discovery still interrupts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from ganhub.errors import ConfigError, PluginError, UnknownVariant
from ganhub.variant import API_VERSION, LOSS_ARGS, BaseConfig, Variant, check_config, make_config

__all__ = ["GROUP", "Entry", "LoadFailure", "PluginError", "validate", "reload", "entries", "failures", "entry", "get"]

GROUP = "ganhub.variants"

MIGRATE_V1 = (
    "to move it to plugin API 2: the loss becomes loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, "
    "step) and uses the loop's `fake` instead of calling G, train_step is gone (use make_optimizers / post_step), "
    "and set api_version=2"
)


@dataclass(frozen=True)
class Entry:
    name: str
    package: str
    version: str
    summary: str
    variant: Variant
    entry_point: str


@dataclass(frozen=True)
class LoadFailure:
    entry_point: str  # "name = module:attr"
    package: str
    version: str
    error: str

    @property
    def name(self) -> str:
        return self.entry_point.split(" = ", 1)[0]


_lock = threading.RLock()
_state: tuple[dict[str, Entry], list[LoadFailure]] | None = None


def _dist(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"] or "?", dist.version or "?"


def _accepts(fn: object, *args: object, **kwargs: object) -> bool | None:
    """Whether fn's signature takes these arguments (None when it cannot be inspected)."""
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError:
        return False
    except ValueError:
        return None
    return True


def _params(fn: object) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def validate(obj: object, ep_name: str) -> Variant:
    """Check a loaded entry-point object against the contract. Raises PluginError naming the fix."""
    if callable(obj) and not isinstance(obj, Variant) and not isinstance(obj, type):
        obj = obj()  # a factory function returning a Variant is allowed
    if not isinstance(obj, Variant):
        raise PluginError(
            f"entry point must point to a ganhub.variant.Variant (or a function returning one), got {type(obj).__name__}"
        )
    v = obj
    if v.api_version == 1:
        raise PluginError(f"variant {v.name!r} is written for plugin API 1, but this ganhub speaks {API_VERSION}; {MIGRATE_V1}")
    if v.api_version != API_VERSION:
        raise PluginError(
            f"variant {v.name!r} targets plugin API {v.api_version} but this ganhub speaks {API_VERSION}; "
            f"upgrade the plugin or ganhub so they match"
        )
    if v.name != ep_name:
        raise PluginError(f"entry point is named {ep_name!r} but the variant calls itself {v.name!r}; make them equal")
    if not isinstance(v.summary, str) or not v.summary or "\n" in v.summary:
        raise PluginError(f"variant {v.name!r} needs a one-line summary")
    _check_hooks(v)
    if not (isinstance(v.config_cls, type) and dataclasses.is_dataclass(v.config_cls) and issubclass(v.config_cls, BaseConfig)):
        raise PluginError(f"variant {v.name!r}: config_cls must be a dataclass subclassing ganhub.variant.BaseConfig")
    try:
        check_config(v.config_cls())
    except TypeError as e:
        raise PluginError(f"variant {v.name!r}: every config field needs a default ({e})") from None
    except ConfigError as e:
        raise PluginError(f"variant {v.name!r}: a config default breaks its own bounds: {e}") from None
    cfg_fields = {f.name for f in dataclasses.fields(v.config_cls)}
    for phase, spec in v.reg_phases.items():
        net, every = spec if isinstance(spec, tuple) and len(spec) == 2 else (None, None)
        ok_every = (isinstance(every, int) and every >= 1) or (isinstance(every, str) and every in cfg_fields)
        if net not in ("D", "G") or not ok_every or phase in ("D", "G"):
            raise PluginError(
                f"variant {v.name!r}: reg_phases[{phase!r}] must be ('D' or 'G', interval >= 1 or a config field name)"
            )
    bad_keys = set(v.test_config) - cfg_fields
    if bad_keys:
        raise PluginError(f"variant {v.name!r}: test_config has unknown keys {sorted(bad_keys)}")
    try:
        make_config(v.config_cls, v.test_config)
    except ConfigError as e:
        raise PluginError(f"variant {v.name!r}: test_config is invalid: {e}") from None
    unknown_modalities = set(v.modalities) - {"image", "points"}
    if unknown_modalities:
        raise PluginError(f"variant {v.name!r}: modalities must be 'image' and/or 'points', got {sorted(unknown_modalities)}")
    return v


def _check_hooks(v: Variant) -> None:
    """The loss, make_optimizers and post_step take what the loop passes; no hook that nothing calls."""
    base = set(dir(Variant)) | {f.name for f in dataclasses.fields(Variant)}
    extra = sorted(n for n in set(dir(v)) - base if not n.startswith("_") and getattr(v, n, None) is not None)
    if extra:
        raise PluginError(
            f"variant {v.name!r} declares {', '.join(extra)}, which ganhub never calls; remove it "
            f"(the hooks are loss, make_optimizers and post_step)"
        )
    dummy = dict.fromkeys(LOSS_ARGS)
    if not callable(v.loss) or _accepts(v.loss, "D", **dummy) is False:
        params = _params(v.loss)
        if params and {"G", "D", "real", "z"} <= params and not {"fake", "real_labels", "fake_labels"} <= params:
            raise PluginError(f"variant {v.name!r} has a plugin API 1 loss; {MIGRATE_V1}")
        missing = [p for p in LOSS_ARGS if p not in params]
        raise PluginError(
            f"variant {v.name!r}: loss must accept (phase, *, {', '.join(LOSS_ARGS)})"
            + (f"; it is missing {missing}" if missing else "")
        )
    if v.make_optimizers is not None and (not callable(v.make_optimizers) or _accepts(v.make_optimizers, 0, 0, 0) is False):
        raise PluginError(f"variant {v.name!r}: make_optimizers must be a function (G, D, cfg) -> (opt_G, opt_D[, schedulers])")
    if v.post_step is not None and (
        not callable(v.post_step) or _accepts(v.post_step, "D", G=0, D=0, cfg=0, step=0) is False
    ):
        raise PluginError(f"variant {v.name!r}: post_step must be a function (phase, *, G, D, cfg, step) -> None")


@contextlib.contextmanager
def _sigint_watch() -> Iterator[list[bool]]:
    """Note whether a real SIGINT (Ctrl-C) arrives inside the block, so a plugin's own `raise
    KeyboardInterrupt` can be told apart from the user's. Signals reach only the main thread."""
    seen = [False]
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        seen[0] = True
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, handler)
    except (ValueError, OSError):  # e.g. an embedded interpreter that owns signals
        yield seen
        return
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def _load_one(ep: EntryPoint) -> Variant:
    """Import and validate one entry point; any escape the plugin raised becomes an Exception."""
    with _sigint_watch() as sigint:
        try:
            obj = ep.load()
            return validate(obj, ep.name)
        except PluginError:
            raise
        except KeyboardInterrupt:
            if sigint[0]:
                raise  # the user pressed Ctrl-C: not the plugin's doing
            raise PluginError("KeyboardInterrupt raised by the plugin at import") from None
        except SystemExit as e:
            raise PluginError(f"SystemExit({e.code!r}): the plugin called sys.exit() at import") from None
        except TypeError as e:
            if "train_step" in str(e):
                raise PluginError(f"plugin API 1 (Variant(train_step=...)); {MIGRATE_V1}") from None
            raise
        except BaseException as e:  # GeneratorExit and other escapes: isolate what we did not write
            if isinstance(e, Exception):
                raise
            raise PluginError(f"{type(e).__name__} raised at import: {e}") from None


def _discover() -> tuple[dict[str, Entry], list[LoadFailure]]:
    found: dict[str, Entry] = {}
    failures: list[LoadFailure] = []
    seen_values: set[tuple[str, str]] = set()
    clashed: dict[str, Entry] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
        pkg, ver = _dist(ep)
        if (ep.name, ep.value) in seen_values:  # the same distribution visible twice on sys.path
            continue
        seen_values.add((ep.name, ep.value))
        label = f"{ep.name} = {ep.value}"
        try:
            variant = _load_one(ep)
        except PluginError as e:
            failures.append(LoadFailure(label, pkg, ver, str(e)))
            continue
        except Exception as e:  # isolate what we did not write: any plugin error is recorded, not raised
            failures.append(LoadFailure(label, pkg, ver, f"{type(e).__name__}: {e}"))
            continue
        if variant.name in found or variant.name in clashed:
            # Ambiguity is never resolved silently: every claimant of a duplicated name is refused.
            first = found.pop(variant.name, None)
            other = first or clashed[variant.name]
            clashed[variant.name] = other
            msg = (f"duplicate variant name {variant.name!r}: provided by both {other.package} {other.version} and "
                   f"{pkg} {ver}; uninstall one of them")
            if first is not None:
                failures.append(LoadFailure(first.entry_point, first.package, first.version, msg))
            failures.append(LoadFailure(label, pkg, ver, msg))
            continue
        found[variant.name] = Entry(variant.name, pkg, ver, variant.summary, variant, label)
    return found, failures


def _loaded() -> tuple[dict[str, Entry], list[LoadFailure]]:
    global _state
    with _lock:
        if _state is None:
            _state = _discover()
        return _state


def reload() -> None:
    """Forget what was discovered (after installing a plugin, or in tests)."""
    global _state
    with _lock:
        _state = None


def entries() -> list[Entry]:
    return sorted(_loaded()[0].values(), key=lambda e: e.name)


def failures() -> list[LoadFailure]:
    return list(_loaded()[1])


def entry(name: str) -> Entry:
    found, failed = _loaded()
    if name not in found:
        why = next((f for f in failed if f.name == name), None)
        if why is not None:
            err = why.error.rstrip(".")
            raise UnknownVariant(
                f"variant {name!r} is installed ({why.package} {why.version}) but failed to load: {err}"
            )
        known = ", ".join(sorted(found)) or "none"
        raise UnknownVariant(f"unknown variant {name!r}; installed variants: {known} (see `ganhub list`)")
    return found[name]


def get(name: str) -> Variant:
    return entry(name).variant
