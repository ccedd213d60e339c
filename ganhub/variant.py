"""The plugin contract: what a GAN variant hands to ganhub. Fits on one screen on purpose."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

API_VERSION = 1  # bump on any incompatible change to Variant or the loss/build signatures


@dataclass
class BaseConfig:
    """Fields every variant's config has (subclass it and add your own, each with a comment)."""

    resolution: int = 32  # image side in pixels (32 or 64 for the built-ins)
    channels: int = 1  # 1 (grey) or 3 (RGB)
    data: str = "image"  # "image" (C x H x W in [-1, 1]) or "points" (2-D toy distributions)
    z_dim: int = 64  # latent size
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas for both networks
    n_critic: int = 1  # D updates per G update
    ema_half_life_kimg: float = 1.0  # EMA of G: weight halves every this many thousand images (0 = off)
    ema_rampup: float = 0.05  # half-life is capped at this fraction of images seen (Karras et al. 2020)


Phase = str  # "D", "G", or a lazy-regulariser phase named in Variant.reg_phases
LossFn = Callable[..., tuple[torch.Tensor, dict[str, float]]]


@dataclass(frozen=True)
class Variant:
    """A GAN variant. `loss(phase, *, G, D, real, z, cfg, step)` returns (loss, scalars to log).

    Phase "D" and any regulariser phase step D's optimiser; phase "G" steps G's. `reg_phases` maps a
    regulariser phase to (network, interval): {"R1": ("D", 16)} runs phase "R1" every 16th step; the
    interval may name a config field instead ({"R1": ("D", "r1_interval")}).
    """

    name: str
    summary: str  # one line, shown by `ganhub list` and the app
    config_cls: type[BaseConfig]
    build: Callable[[BaseConfig], tuple[nn.Module, nn.Module]]  # -> (G, D); G(z) in [-1, 1]
    loss: LossFn
    test_config: Mapping[str, Any] = field(default_factory=dict)  # tiny overrides for the conformance suite
    reg_phases: Mapping[str, tuple[str, int | str]] = field(default_factory=dict)  # interval or a config key
    modalities: tuple[str, ...] = ("image",)  # add "points" if G can learn the 2-D toys
    train_step: Callable[..., dict[str, float]] | None = None  # only for methods the loop cannot express
    api_version: int = API_VERSION

    def make_config(self, **overrides: Any) -> BaseConfig:
        return make_config(self.config_cls, overrides)


def config_fields(cfg_cls: type[BaseConfig]) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cfg_cls)}


def make_config(cfg_cls: type[BaseConfig], overrides: Mapping[str, Any] | None = None) -> BaseConfig:
    """Build a config, type-checking overrides. Raises ConfigError naming the key and the fix."""
    from ganhub.errors import ConfigError

    defaults = cfg_cls()
    fields = config_fields(cfg_cls)
    values = {}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise ConfigError(f"unknown config key {key!r} for {cfg_cls.__module__.split('.')[0]}; known keys: {', '.join(fields)}")
        values[key] = coerce(key, value, getattr(defaults, key))
    return dataclasses.replace(defaults, **values)


def coerce(key: str, value: Any, default: Any) -> Any:
    """Convert `value` (maybe a CLI string or JSON list) to the type of `default`, or raise ConfigError."""
    from ganhub.errors import ConfigError

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
        try:
            return int(str(value))
        except ValueError:
            raise bad() from None
    if isinstance(default, float):
        if isinstance(value, bool):
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
    """variant.build(cfg), checked, with `G.z_dim` recorded so samplers need nothing but G."""
    from ganhub.errors import ConfigError, GanhubError

    try:
        G, D = variant.build(cfg)
    except GanhubError:
        raise
    except Exception as e:  # a plugin bug or a config it cannot build: say which
        raise ConfigError(f"variant {variant.name!r} could not build its networks for this config: {type(e).__name__}: {e}") from None
    if not (isinstance(G, nn.Module) and isinstance(D, nn.Module)):
        raise ConfigError(f"variant {variant.name!r}: build(cfg) must return two nn.Modules (G, D)")
    G.z_dim = cfg.z_dim
    return G, D


def capabilities(G: nn.Module) -> set[str]:
    """What the UI may offer for this generator. "mapping": style mixing and truncation."""
    caps = set()
    if all(hasattr(G, a) for a in ("mapping", "synthesis", "num_ws", "w_avg")):
        caps.add("mapping")
    return caps
