"""One training iteration for any variant: the phase runner that ganhub.train and ganhub.testing share.

An iteration is n_critic D phases (then the D regularisers that are due), n_gen G phases (then the due G
regularisers), `post_step` after every optimiser step and the schedulers stepped once. The loop, not the
plugin, draws z and the fake labels and computes the fakes: detached for D phases, with grad for G; with
`cfg.reuse_fakes` the first G phase reuses the last D phase's fakes (same z and labels), computed once
with grad, which saves one G forward per iteration. During a phase the other network is frozen and the
phase runs under autocast(precision). The first time each phase runs, G's output and the loss's return
value are checked so that a plugin bug is one line naming the plugin and the fix, not a torch traceback.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from ganhub.augment import AugmentedD
from ganhub.errors import ConfigError, GanhubError, PluginError, TrainingDiverged
from ganhub.precision import autocast
from ganhub.variant import BaseConfig, Variant, call_G


@dataclass
class Optimizers:
    G: torch.optim.Optimizer
    D: torch.optim.Optimizer
    schedulers: list = field(default_factory=list)  # stepped once per iteration

    def state_dict(self) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if len(state.get("schedulers", [])) != len(self.schedulers):
            raise ConfigError(f"the checkpoint holds {len(state.get('schedulers', []))} learning-rate schedulers but the "
                              f"variant builds {len(self.schedulers)}; resume with the plugin version that wrote it")
        for s, sd in zip(self.schedulers, state.get("schedulers", [])):
            s.load_state_dict(sd)

    def scale_lr(self, factor: float) -> None:
        """Every parameter group's learning rate becomes its initial one times `factor` (see `lr_factor`).

        The initial rate is kept in the group as "initial_lr" (torch's schedulers use the same key), so it
        travels with the optimiser's state through checkpoints and a resumed run scales the same base.
        """
        for opt in (self.G, self.D):
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor


def lr_factor(step: int, total: int, decay: float) -> float:
    """Learning-rate multiplier of iteration `step` (0-based) of a `total`-step run with `lr_rampdown=decay`.

    1 until the last `decay` fraction of the run, then linear toward 0 (Miyato et al. 2018 decayed
    linearly over the whole run, decay=1). A function of the step alone: a resumed run follows it exactly.
    """
    if decay <= 0 or total <= 0:
        return 1.0
    span = decay * total
    return min(1.0, max(0.0, (total - step) / span))


def make_optimizers(variant: Variant, G: nn.Module, D: nn.Module, cfg: BaseConfig) -> Optimizers:
    """The variant's make_optimizers(G, D, cfg), checked; default Adam(lr_g / lr_d, betas)."""
    if variant.make_optimizers is None:
        return Optimizers(
            torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas),
            torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas),
        )
    fix = "return (opt_G, opt_D) or (opt_G, opt_D, [schedulers]) built over G's and D's own parameters"
    try:
        out = variant.make_optimizers(G, D, cfg)
    except GanhubError:
        raise
    except Exception as e:
        raise PluginError(f"variant {variant.name!r}: make_optimizers raised {type(e).__name__}: {e}") from e
    if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
        raise PluginError(f"variant {variant.name!r}: make_optimizers returned {type(out).__name__}; {fix}")
    opt_G, opt_D, scheds = out[0], out[1], list(out[2]) if len(out) == 3 else []
    for net, module, opt in (("G", G, opt_G), ("D", D, opt_D)):
        if not isinstance(opt, torch.optim.Optimizer):
            raise PluginError(f"variant {variant.name!r}: make_optimizers gave {type(opt).__name__} for {net}; {fix}")
        own = {id(p) for p in module.parameters()}
        if any(id(p) not in own for g in opt.param_groups for p in g["params"]):
            raise PluginError(f"variant {variant.name!r}: the optimiser for {net} holds parameters that are not {net}'s; {fix}")
    if not all(callable(getattr(s, "step", None)) and callable(getattr(s, "state_dict", None)) for s in scheds):
        raise PluginError(f"variant {variant.name!r}: make_optimizers' schedulers need step() and state_dict(); {fix}")
    return Optimizers(opt_G, opt_D, scheds)


# errors that are not the plugin's fault: never re-worded as a plugin bug
_PASS_THROUGH = (GanhubError, MemoryError, torch.OutOfMemoryError)


class Batches(Protocol):
    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]: ...  # (real on device, labels (B,) int64 | None)


class PhaseRunner:
    """Runs training iterations of `variant` on (G, D) with `opts`. See the module docstring."""

    def __init__(self, variant: Variant, cfg: BaseConfig, G: nn.Module, D: nn.Module, opts: Optimizers, *,
                 device: str | torch.device, precision: str = "fp32",
                 sync_grads: Callable[[nn.Module], None] | None = None,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.variant, self.cfg, self.G, self.D, self.opts = variant, cfg, G, D, opts
        self.device, self.precision, self.sync_grads = torch.device(device), precision, sync_grads
        self.D_seen = D if augment is None else AugmentedD(D, augment)  # what the loss calls as D
        # an adaptive augmentation is told each D phase's real batch
        self._watched = self.D_seen if isinstance(self.D_seen, AugmentedD) else None
        self.reg = {ph: (net, int(getattr(cfg, every)) if isinstance(every, str) else int(every))
                    for ph, (net, every) in variant.reg_phases.items()}
        # parameters the plugin left trainable; freezing toggles only these
        self._trainable = {"G": [p for p in G.parameters() if p.requires_grad],
                           "D": [p for p in D.parameters() if p.requires_grad]}
        self._checked: set[str] = set()  # phases whose return value was validated

    # ------------------------------------------------------------------ public
    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z (n, z_dim) ~ N(0, 1) and fake labels (n,) uniform over the classes (None if unconditional)."""
        z = torch.randn(n, self.cfg.z_dim, device=self.device)
        c = torch.randint(0, self.cfg.num_classes, (n,), device=self.device) if self.cfg.num_classes > 0 else None
        return z, c

    def run(self, batches: Batches, step: int) -> dict[str, float]:
        """One iteration (see the module docstring); returns the scalars the phases logged."""
        cfg, logs = self.cfg, {}
        try:
            kept = None  # (fake with grad, z, labels) of the last D phase, for reuse_fakes
            for i in range(cfg.n_critic):
                real, real_labels = self._next(batches)
                z, fake_labels = self.draw(cfg.batch_size)
                if cfg.reuse_fakes and i == cfg.n_critic - 1:
                    fake_g = self._fake(z, fake_labels, grad=True)
                    kept, fake = (fake_g, z, fake_labels), fake_g.detach()
                else:
                    fake = self._fake(z, fake_labels, grad=False)
                args = dict(real=real, fake=fake, real_labels=real_labels, fake_labels=fake_labels, z=z)
                if self._watched is not None:  # an adaptive augmentation watches D's output on these
                    self._watched.reals = real
                try:
                    logs.update(self._phase("D", "D", args, step))
                finally:
                    if self._watched is not None:
                        self._watched.reals = None
            for phase, (net, every) in self.reg.items():
                if net == "D" and step % every == 0:  # lazy regularisers: same real batch and fakes as the D phase
                    logs.update(self._phase(phase, "D", args, step))
            for j in range(cfg.n_gen):
                real, real_labels = self._next(batches)
                if kept is not None and j == 0:
                    fake, z, fake_labels = kept
                else:
                    z, fake_labels = self.draw(cfg.batch_size)
                    fake = self._fake(z, fake_labels, grad=True)
                kept = None
                args = dict(real=real, fake=fake, real_labels=real_labels, fake_labels=fake_labels, z=z)
                logs.update(self._phase("G", "G", args, step))
            for phase, (net, every) in self.reg.items():
                if net == "G" and step % every == 0:
                    args["fake"] = self._fake(args["z"], args["fake_labels"], grad=True)
                    logs.update(self._phase(phase, "G", args, step))
            for s in self.opts.schedulers:
                s.step()
        finally:
            self._freeze(None)
        return logs

    # ------------------------------------------------------------------ parts
    def _freeze(self, net: str | None) -> None:
        """Only `net`'s (originally trainable) parameters require grad; None restores both."""
        for name, params in self._trainable.items():
            for p in params:
                p.requires_grad_(net is None or name == net)

    def _next(self, batches: Batches) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = batches.next()
        real, labels = (out, None) if isinstance(out, torch.Tensor) else out
        k = self.cfg.num_classes
        if k == 0:
            return real, None
        if labels is None:
            raise ConfigError(f"num_classes is {k} but the dataset has no labels; use a labelled dataset "
                              "(one subfolder per class) or --set num_classes=0")
        if "labels" not in self._checked:
            self._checked.add("labels")
            if labels.shape != (real.shape[0],) or labels.dtype != torch.int64 or labels.min() < 0 or labels.max() >= k:
                raise ConfigError(f"num_classes is {k} but the dataset's labels reach {int(labels.max())}; "
                                  f"--set num_classes={int(labels.max()) + 1} (or more)")
        return real, labels

    def _fake(self, z: torch.Tensor, labels: torch.Tensor | None, grad: bool) -> torch.Tensor:
        self._freeze("G")
        with autocast(self.device, self.precision), torch.set_grad_enabled(grad):
            try:
                fake = call_G(self.G, z, labels)
            except _PASS_THROUGH:
                raise
            except Exception as e:
                raise self._plugin_error(f"G({'z' if labels is None else 'z, c'}) raised {type(e).__name__}: {e}") from e
        if "fake" not in self._checked:
            self._check_fake(fake, z)
            self._checked.add("fake")
        return fake

    def _phase(self, phase: str, net: str, args: dict[str, Any], step: int) -> dict[str, float]:
        module, opt = (self.G, self.opts.G) if net == "G" else (self.D, self.opts.D)
        self._freeze(net)
        with autocast(self.device, self.precision):
            try:
                out = self.variant.loss(phase, G=self.G, D=self.D_seen, cfg=self.cfg, step=step, **args)
            except _PASS_THROUGH:
                raise
            except Exception as e:
                raise self._plugin_error(f"loss phase {phase!r} raised {type(e).__name__}: {e}") from e
        if phase not in self._checked:
            self._check_loss(phase, net, out)
            self._checked.add(phase)
        loss, logs = out
        value = float(loss.detach().float())
        if not math.isfinite(value):
            raise TrainingDiverged(f"training diverged at step {step}: the {phase} loss is {value}; lower the learning "
                                   "rates (--set lr_d=... lr_g=...) and resume from the last checkpoint, or start over")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.sync_grads is not None:
            self.sync_grads(module)
        opt.step()
        if self.variant.post_step is not None:
            self._freeze(None)  # the hook may edit either network (clipping, an EMA of D)
            self.variant.post_step(phase, G=self.G, D=self.D, cfg=self.cfg, step=step)
        return {k: float(x) for k, x in logs.items()}

    # ------------------------------------------------------------------ first-step checks
    def _plugin_error(self, what: str) -> PluginError:
        return PluginError(f"variant {self.variant.name!r}: {what}; fix the plugin (ganhub.testing.check_variant "
                           "reproduces this in seconds)")

    def _check_fake(self, x: Any, z: torch.Tensor) -> None:
        cfg, b = self.cfg, z.shape[0]
        want = (b, 2) if cfg.data == "points" else (b, cfg.channels, cfg.resolution, cfg.resolution)
        if not isinstance(x, torch.Tensor):
            raise self._plugin_error(f"G returned {type(x).__name__}, not a tensor of shape {want}")
        if not x.is_floating_point():
            raise self._plugin_error(f"G returned dtype {x.dtype}; return floats (images in [-1, 1])")
        if tuple(x.shape) != want:
            raise self._plugin_error(
                f"G returned shape {tuple(x.shape)} but the config asks for {want} "
                + ("(batch, 2)" if cfg.data == "points" else "(batch, channels, resolution, resolution)")
                + "; build G from cfg.channels and cfg.resolution")
        with torch.no_grad():
            finite = bool(torch.isfinite(x).all())
            lo, hi = (float(x.min()), float(x.max())) if finite else (0.0, 0.0)
        if not finite:
            raise self._plugin_error("G's first output holds NaN or inf")
        if cfg.data == "image" and (lo < -100 or hi > 100):  # loose: unclamped StyleGAN G overshoots ~8x at init
            raise self._plugin_error(f"G's images span [{lo:.3g}, {hi:.3g}], far outside [-1, 1]; end G with tanh "
                                     "or scale its output to [-1, 1]")

    def _check_loss(self, phase: str, net: str, out: Any) -> None:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise self._plugin_error(f"loss phase {phase!r} returned {type(out).__name__}; return (loss, {{name: float}})")
        loss, logs = out
        if not (isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.is_floating_point()):
            raise self._plugin_error(f"loss phase {phase!r} returned {type(loss).__name__} "
                                     f"{tuple(getattr(loss, 'shape', ()))} as the loss; return a scalar tensor")
        if not loss.requires_grad:
            raise self._plugin_error(f"the {phase!r} loss does not depend on {net}'s parameters (it has no grad); "
                                     f"compute it from {net}'s output")
        if not isinstance(logs, dict):
            raise self._plugin_error(f"loss phase {phase!r} logs {type(logs).__name__}; return a dict of floats")
        bad = {k: type(x).__name__ for k, x in logs.items()
               if not isinstance(k, str) or isinstance(x, bool) or not isinstance(x, (float, int))}
        if bad:
            raise self._plugin_error(f"loss phase {phase!r} logs non-floats {bad}; log Python floats (tensor.item())")

