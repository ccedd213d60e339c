"""The plugin contract (API 2): what a GAN variant hands to ganhub. Fits on one screen on purpose.

A variant is a config dataclass (each field's bounds declared beside it with `bounded`), a `build`
returning (G, D), and one `loss` called per phase by the loop in ganhub.step. Shapes at the boundary:
z (B, z_dim) ~ N(0, 1); labels (B,) int64 in [0, num_classes) or None; G(z) or G(z, c) -> (B, C, R, R)
in [-1, 1] ((B, 2) for "points"); D(x) or D(x, c) -> (B,) scores.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ganhub.errors import ConfigError

API_VERSION = 2  # bump on any incompatible change to Variant or the loss/build signatures

# DiffAugment's transformations (Zhao et al. 2020), named and parsed here, below ganhub.augment (which
# implements them), so that config validation and the augmentation code share one list and one parser.
AUGMENT_POLICIES = ("color", "translation", "cutout")


@dataclass(frozen=True)
class Bounds:
    """Allowed values of one config field (numbers: ge/gt/le/lt; anything: choices; check: a predicate)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    check: Callable[[Any], bool] | None = None
    expects: str | None = None  # how to describe `check` in an error, e.g. "'auto', 'off' or a comma list of ..."

    def describe(self) -> str:
        if self.expects:
            return self.expects
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        parts = [f"{op} {v:g}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)) if v is not None]
        return " and ".join(parts) or "any value"

    def ok(self, x: Any) -> bool:
        if self.choices is not None and x not in self.choices:
            return False
        if self.check is not None and not self.check(x):
            return False
        return not (
            (self.ge is not None and not x >= self.ge)
            or (self.gt is not None and not x > self.gt)
            or (self.le is not None and not x <= self.le)
            or (self.lt is not None and not x < self.lt)
        )


_NO_VALUE = object()


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, choices: Sequence | None = None, check: Callable[[Any], bool] | None = None,
            expects: str | None = None, absent: Any = _NO_VALUE) -> Any:
    """A dataclass field whose bounds sit beside it: `lr_d: float = bounded(2e-4, gt=0, le=1)  # comment`.

    For a tuple field (betas) the bounds apply to every element. A subclass that re-declares a field
    with a plain default keeps the bounds its base class declared. `absent` is the value a recorded
    config.json that predates the field meant (a field added in a later plugin version with a new
    default): folders written before keep loading as the model they hold, new runs get `default`.
    """
    b = Bounds(ge, gt, le, lt, tuple(choices) if choices is not None else None, check, expects)
    meta = {"bounds": b} if absent is _NO_VALUE else {"bounds": b, "absent": absent}
    return field(default=default, metadata=meta)


def absent_values(cfg_cls: type) -> dict[str, Any]:
    """{field: the value a recorded config without it meant}, for fields declared with `absent=`."""
    return {f.name: f.metadata["absent"] for f in dataclasses.fields(cfg_cls) if "absent" in f.metadata}


def parse_policy(augment: str) -> str:
    """"auto", "off" or a comma list of color, translation, cutout -> its canonical spelling."""
    if not isinstance(augment, str):
        raise ConfigError(f"augment must be a string, got {augment!r}; use auto, off or e.g. color,translation")
    text = augment.strip().lower()
    if text in ("auto", "off"):
        return text
    parts = [p.strip() for p in text.split(",")]
    bad = [p for p in parts if p not in AUGMENT_POLICIES]
    if bad or not parts:
        raise ConfigError(
            f"augment={augment!r}: unknown part {bad[0]!r}; use auto, off, or a comma list of "
            + ", ".join(AUGMENT_POLICIES)
        )
    return ",".join(dict.fromkeys(parts))  # order as given, duplicates dropped


def _augment_ok(x: str) -> bool:
    """The config check accepts exactly what training will parse (one parser, parse_policy)."""
    try:
        parse_policy(x)
    except ConfigError:
        return False
    return True


@dataclass
class BaseConfig:
    """Fields every variant's config has (subclass it and add your own, each with bounds and a comment)."""

    resolution: int = bounded(32, ge=8, le=1024)  # image side in pixels (a power of two; 32 or 64 for the built-ins)
    channels: int = bounded(1, choices=(1, 3))  # 1 (grey) or 3 (RGB)
    data: str = bounded("image", choices=("image", "points"))  # C x H x W in [-1, 1], or 2-D toy points
    z_dim: int = bounded(64, ge=1, le=4096)  # latent size; z ~ N(0, 1)
    num_classes: int = bounded(0, ge=0, le=10000)  # 0 = unconditional; else G(z, c) and D(x, c)
    batch_size: int = bounded(64, ge=1, le=65536)  # per process
    lr_g: float = bounded(2e-4, gt=0, le=1)
    lr_d: float = bounded(2e-4, gt=0, le=1)
    betas: tuple[float, float] = bounded((0.5, 0.999), ge=0, lt=1)  # Adam betas for both networks
    n_critic: int = bounded(1, ge=1, le=100)  # D steps per iteration
    n_gen: int = bounded(1, ge=1, le=100)  # G steps per iteration
    # over the last this fraction of the run's --steps both learning rates fall linearly toward 0 (0 = constant)
    lr_rampdown: float = bounded(0.0, ge=0, le=1)
    ema_half_life_kimg: float = bounded(1.0, ge=0, le=1e6)  # EMA of G: halves every this many k global images (0 = off)
    ema_rampup: float = bounded(0.05, ge=0, le=1)  # half-life capped at this fraction of images seen (Karras et al. 2020)
    augment: str = bounded("auto", check=_augment_ok, expects="'auto', 'off' or a comma list of " + ", ".join(AUGMENT_POLICIES))
    # ADA's target (Karras et al. 2020): each transformation hits an image with probability p, from 0 rising
    # while D's mean sign on reals exceeds this, else falling; 0 = p fixed at 1 (as published; older folders)
    augment_target: float = bounded(0.6, ge=0, lt=1, absent=0.0)
    reuse_fakes: bool = True  # the G phase reuses the last D phase's fakes (same z and labels): one G forward less


Phase = str  # "D", "G", or a lazy-regulariser phase named in Variant.reg_phases
LossFn = Callable[..., tuple[torch.Tensor, dict[str, float]]]
LOSS_ARGS = ("G", "D", "real", "fake", "real_labels", "fake_labels", "z", "cfg", "step")


@dataclass(frozen=True)
class Variant:
    """A GAN variant.

    `loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step) -> (loss, {name: float})`.
    Phase "D" and D regulariser phases step D's optimiser; "G" and G regulariser phases step G's.
    `fake` is computed by the loop (detached for D phases, with grad for G). `reg_phases` maps a
    regulariser phase to (network, interval): {"R1": ("D", 16)} runs "R1" every 16th iteration; the
    interval may name a config field ({"R1": ("D", "r1_interval")}).
    `make_optimizers(G, D, cfg) -> (opt_G, opt_D[, schedulers])` replaces the default Adam(lr, betas);
    `post_step(phase, *, G, D, cfg, step)` runs after every optimiser step (e.g. weight clipping).
    """

    name: str
    summary: str  # one line, shown by `ganhub list` and the app
    config_cls: type[BaseConfig]
    build: Callable[[BaseConfig], tuple[nn.Module, nn.Module]]  # -> (G, D)
    loss: LossFn
    test_config: Mapping[str, Any] = field(default_factory=dict)  # tiny overrides for the conformance suite
    reg_phases: Mapping[str, tuple[str, int | str]] = field(default_factory=dict)  # interval or a config key
    modalities: tuple[str, ...] = ("image",)  # add "points" if G can learn the 2-D toys
    make_optimizers: Callable[..., tuple] | None = None
    post_step: Callable[..., None] | None = None
    paper: str = ""  # "Authors YEAR, Title, URL" of what it implements; model cards link it
    api_version: int = API_VERSION

    def make_config(self, **overrides: Any) -> BaseConfig:
        return make_config(self.config_cls, overrides)


def config_fields(cfg_cls: type[BaseConfig]) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cfg_cls)}


def field_bounds(cfg_cls: type) -> dict[str, Bounds]:
    """Bounds per field, inherited from the nearest class in the MRO that declared them."""
    out: dict[str, Bounds] = {}
    for f in dataclasses.fields(cfg_cls):
        for klass in cfg_cls.__mro__:
            own = klass.__dict__.get("__dataclass_fields__", {}).get(f.name)
            if own is not None and "bounds" in own.metadata:
                out[f.name] = own.metadata["bounds"]
                break
    return out


def make_config(cfg_cls: type[BaseConfig], overrides: Mapping[str, Any] | None = None) -> BaseConfig:
    """Build a config from overrides (CLI strings or JSON values), checking type, finiteness, range and
    choices of every field. Raises ConfigError naming the key, the value and the bound."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"a config must be a mapping of key to value, got {type(overrides).__name__}")
    defaults = cfg_cls()
    fields = config_fields(cfg_cls)
    values = {}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise ConfigError(f"unknown config key {key!r} for {cfg_cls.__module__.split('.')[0]}; known keys: {', '.join(fields)}")
        values[key] = coerce(key, value, getattr(defaults, key))
    cfg = dataclasses.replace(defaults, **values)
    check_config(cfg)
    return cfg


def check_config(cfg: BaseConfig) -> None:
    """Every field finite and inside its declared bounds, else ConfigError (one line)."""
    bounds = field_bounds(type(cfg))
    for key in config_fields(type(cfg)):
        value = getattr(cfg, key)
        items = value if isinstance(value, tuple) else (value,)
        for x in items:
            if isinstance(x, float) and not math.isfinite(x):
                raise ConfigError(f"config key {key!r} must be a finite number, got {value!r}")
        b = bounds.get(key)
        if b is not None and not all(b.ok(x) for x in items):
            what = f"each value of config key {key!r}" if isinstance(value, tuple) else f"config key {key!r}"
            fix = "pick one of them" if b.choices is not None else "pass a value in that range"
            raise ConfigError(f"{what} must be {b.describe()}, got {value!r}; {fix}")


def coerce(key: str, value: Any, default: Any) -> Any:
    """Convert `value` (maybe a CLI string or JSON list) to the type of `default`, or raise ConfigError."""
    def bad() -> ConfigError:
        return ConfigError(f"config key {key!r} expects {type(default).__name__} like {default!r}, got {value!r}")

    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad()
    if isinstance(default, int):
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, str):
            raise bad()
        try:
            return int(value.strip())
        except ValueError:
            raise bad() from None
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise bad()
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad() from None
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise bad()
        return tuple(coerce(key, v, d) for v, d in zip(value, default))
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad()
        return value
    raise bad()


def config_to_dict(cfg: BaseConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def build_models(variant: Variant, cfg: BaseConfig) -> tuple[nn.Module, nn.Module]:
    """variant.build(cfg), checked, with `G.z_dim` and `G.num_classes` set so samplers need nothing but G."""
    from ganhub.errors import ConfigError, GanhubError, PluginError

    try:
        G, D = variant.build(cfg)
    except GanhubError:
        raise
    except Exception as e:  # a plugin bug or a config it cannot build: say which
        raise ConfigError(f"variant {variant.name!r} could not build its networks for this config: {type(e).__name__}: {e}") from None
    if not (isinstance(G, nn.Module) and isinstance(D, nn.Module)):
        raise ConfigError(f"variant {variant.name!r}: build(cfg) must return two nn.Modules (G, D)")
    for net, m in (("G", G), ("D", D)):
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in m.parameters()):
            raise PluginError(f"variant {variant.name!r}: {net} has lazy (uninitialised) parameters, which cannot be "
                              "copied, broadcast or checkpointed; give every layer its sizes in build(cfg)")
    G.z_dim = cfg.z_dim
    G.num_classes = cfg.num_classes
    return G, D


def supports_classes(variant: Variant) -> bool:
    """Whether the variant builds class-conditional networks (it refuses num_classes > 0 with ConfigError
    otherwise); tried at its tiny test_config, so this takes milliseconds."""
    try:
        build_models(variant, make_config(variant.config_cls, {**variant.test_config, "num_classes": 2}))
    except ConfigError:
        return False
    return True


def call_G(G: nn.Module, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """G(z) for an unconditional generator, G(z, labels) for a conditional one."""
    return G(z) if labels is None else G(z, labels)


def capabilities(G: nn.Module) -> set[str]:
    """What the UI may offer for this generator. "mapping": style mixing and truncation; "classes": labels."""
    caps = set()
    if all(hasattr(G, a) for a in ("mapping", "synthesis", "num_ws", "w_avg")):
        caps.add("mapping")
    if getattr(G, "num_classes", 0):
        caps.add("classes")
    return caps
