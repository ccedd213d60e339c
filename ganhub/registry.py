"""Discover variants from the `ganhub.variants` entry-point group; validate; remember failures.

A plugin that fails to import or validate never breaks the others: it is recorded as a LoadFailure
(entry point, distribution, version, error) and shown by `ganhub list` and the app.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from ganhub.errors import UnknownVariant
from ganhub.variant import API_VERSION, BaseConfig, Variant

GROUP = "ganhub.variants"


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


class PluginError(Exception):
    """A plugin broke the contract; the message says how to mend it."""


_lock = threading.Lock()
_state: tuple[dict[str, Entry], list[LoadFailure]] | None = None


def _dist(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"] or "?", dist.version or "?"


def validate(obj: object, ep_name: str) -> Variant:
    """Check a loaded entry-point object against the contract. Raises PluginError naming the fix."""
    if callable(obj) and not isinstance(obj, Variant) and not isinstance(obj, type):
        obj = obj()  # a factory function returning a Variant is allowed
    if not isinstance(obj, Variant):
        raise PluginError(
            f"entry point must point to a ganhub.variant.Variant (or a function returning one), got {type(obj).__name__}"
        )
    v = obj
    if v.api_version != API_VERSION:
        raise PluginError(
            f"variant {v.name!r} targets plugin API {v.api_version} but this ganhub speaks {API_VERSION}; "
            f"upgrade the plugin or ganhub so they match"
        )
    if v.name != ep_name:
        raise PluginError(f"entry point is named {ep_name!r} but the variant calls itself {v.name!r}; make them equal")
    if not v.summary or "\n" in v.summary:
        raise PluginError(f"variant {v.name!r} needs a one-line summary")
    if not (isinstance(v.config_cls, type) and dataclasses.is_dataclass(v.config_cls) and issubclass(v.config_cls, BaseConfig)):
        raise PluginError(f"variant {v.name!r}: config_cls must be a dataclass subclassing ganhub.variant.BaseConfig")
    try:
        v.config_cls()
    except TypeError as e:
        raise PluginError(f"variant {v.name!r}: every config field needs a default ({e})") from None
    params = inspect.signature(v.loss).parameters
    missing = [p for p in ("G", "D", "real", "z", "cfg", "step") if p not in params and not any(
        q.kind is inspect.Parameter.VAR_KEYWORD for q in params.values())]
    if missing:
        raise PluginError(f"variant {v.name!r}: loss(phase, *, G, D, real, z, cfg, step) is missing {missing}")
    cfg_fields = {f.name for f in dataclasses.fields(v.config_cls)}
    for phase, (net, every) in v.reg_phases.items():
        ok_every = (isinstance(every, int) and every >= 1) or (isinstance(every, str) and every in cfg_fields)
        if net not in ("D", "G") or not ok_every or phase in ("D", "G"):
            raise PluginError(
                f"variant {v.name!r}: reg_phases[{phase!r}] must be ('D' or 'G', interval >= 1 or a config field name)"
            )
    bad_keys = set(v.test_config) - {f.name for f in dataclasses.fields(v.config_cls)}
    if bad_keys:
        raise PluginError(f"variant {v.name!r}: test_config has unknown keys {sorted(bad_keys)}")
    unknown_modalities = set(v.modalities) - {"image", "points"}
    if unknown_modalities:
        raise PluginError(f"variant {v.name!r}: modalities must be 'image' and/or 'points', got {sorted(unknown_modalities)}")
    return v


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
            variant = validate(ep.load(), ep.name)
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
    found = _loaded()[0]
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise UnknownVariant(f"unknown variant {name!r}; installed variants: {known} (see `ganhub list`)")
    return found[name]


def get(name: str) -> Variant:
    return entry(name).variant
