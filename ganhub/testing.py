"""The conformance suite every variant gets for free, ours and third-party alike.

In a plugin's own tests:

    from ganhub.testing import check_variant
    def test_conformance():
        check_variant("my-variant")          # or a Variant object not yet installed

or from a shell: `python -m ganhub.testing my-variant` (no names: every installed variant).
Each check builds the variant at its tiny `test_config`, so the whole suite takes seconds per variant.
Training checks step through ganhub.step.PhaseRunner, the trainer's own code (same freezing, same
autocast, same hooks), so a variant that passes here trains. When the variant builds with
num_classes > 0, the conditional path is checked too.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import sys
from collections.abc import Callable

import torch
from torch import nn

from ganhub import registry
from ganhub.errors import ConfigError
from ganhub.step import PhaseRunner, make_optimizers
from ganhub.variant import BaseConfig, Variant, build_models, call_G, capabilities, make_config

TEST_CLASSES = 3  # classes of the conditional checks


def _variant(v: str | Variant) -> Variant:
    return registry.get(v) if isinstance(v, str) else registry.validate(v, v.name)


def tiny_config(v: Variant, **extra) -> BaseConfig:
    return make_config(v.config_cls, {**v.test_config, **extra})


def conditional_config(v: Variant) -> BaseConfig | None:
    """The tiny config with num_classes > 0, or None when the variant refuses it (ConfigError at build)."""
    if v.test_config.get("num_classes", 0) > 0:
        return tiny_config(v)
    try:
        cfg = tiny_config(v, num_classes=TEST_CLASSES)
        G, _ = build_models(v, cfg)
    except ConfigError:
        return None
    z, c = torch.randn(2, cfg.z_dim), torch.arange(2) % TEST_CLASSES
    try:
        with torch.no_grad():
            G.eval()(z, c)
    except TypeError as e:
        raise AssertionError(
            f"{v.name}: builds with num_classes={TEST_CLASSES} but G(z, c) fails ({e}); take the class labels, "
            "or refuse num_classes > 0 in build with a ganhub.errors.ConfigError"
        ) from None
    return cfg


def _configs(v: Variant) -> list[BaseConfig]:
    """The tiny config unconditional and conditional, as far as the variant builds them (at least one)."""
    configs = []
    try:
        cfg = tiny_config(v, num_classes=0)
        build_models(v, cfg)
        configs.append(cfg)
    except ConfigError:  # a conditional-only variant (AC-GAN)
        pass
    cond = conditional_config(v)
    configs += [cond] if cond is not None else []
    assert configs, f"{v.name}: builds neither with num_classes=0 nor with num_classes={TEST_CLASSES}"
    return configs


def _real(cfg: BaseConfig, n: int) -> torch.Tensor:
    if cfg.data == "points":
        return torch.randn(n, 2)
    return torch.rand(n, cfg.channels, cfg.resolution, cfg.resolution) * 2 - 1


def _labels(cfg: BaseConfig, n: int) -> torch.Tensor | None:
    return torch.randint(0, cfg.num_classes, (n,)) if cfg.num_classes else None


class _Batches:
    """Random real batches (and labels when conditional), as ganhub.train's batches hand them out."""

    def __init__(self, cfg: BaseConfig):
        self.cfg = cfg

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return _real(self.cfg, self.cfg.batch_size), _labels(self.cfg, self.cfg.batch_size)


def _runner(v: Variant, cfg: BaseConfig, seed: int = 0, **kw) -> PhaseRunner:
    torch.manual_seed(seed)
    G, D = build_models(v, cfg)
    G.train(), D.train()
    return PhaseRunner(v, cfg, G, D, make_optimizers(v, G, D, cfg), device="cpu", **kw)


def _takes_labels(D: nn.Module) -> bool:
    """D(x, c) (a conditional D such as a projection D) rather than D(x) (e.g. AC-GAN's, which predicts c)."""
    try:
        params = list(inspect.signature(D.forward).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    return len(positional) >= 2


def _D(D: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    return D(x, labels) if labels is not None and _takes_labels(D) else D(x)


def check_output_shape_and_range(v: str | Variant) -> None:
    """G(z) (or G(z, c)) has shape (B, C, R, R) in [-1, 1] at 32 and 64 px, 1 and 3 channels ((B, 2) for
    points); D gives one score per sample."""
    v = _variant(v)
    combos = [(r, c, "image") for r in (32, 64) for c in (1, 3)] if "image" in v.modalities else []
    combos += [(32, 1, "points")] if "points" in v.modalities else []
    for k in sorted({c.num_classes for c in _configs(v)}):
        for res, ch, data in combos:
            cfg = tiny_config(v, resolution=res, channels=ch, data=data, num_classes=k)
            torch.manual_seed(0)
            G, D = build_models(v, cfg)
            assert G.z_dim == cfg.z_dim and G.num_classes == k
            z, c = torch.randn(cfg.batch_size, cfg.z_dim), _labels(cfg, cfg.batch_size)
            where = f"{v.name}: G at {res}px/{ch}ch/{data}/{k} classes"
            for mode in ("train", "eval"):
                getattr(G, mode)()
                with torch.no_grad():
                    x = call_G(G, z, c)
                want = (cfg.batch_size, 2) if data == "points" else (cfg.batch_size, ch, res, res)
                assert tuple(x.shape) == want, f"{where} in {mode} mode has shape {tuple(x.shape)}, want {want}"
                assert torch.isfinite(x).all(), f"{where} has non-finite values"
                if data == "image" and mode == "eval":
                    assert x.min() >= -1 - 1e-6 and x.max() <= 1 + 1e-6, f"{where} leaves [-1, 1]: [{x.min():.3f}, {x.max():.3f}]"
            with torch.no_grad():
                score = _D(D, _real(cfg, cfg.batch_size), c)
            assert score.numel() == cfg.batch_size, f"{v.name}: D must return one score per sample, got shape {tuple(score.shape)}"


class _Watch:
    """An augmentation (a flip) that, like ganhub.augment.AdaptiveAugment, is shown D's output on the reals."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1)

    def observe(self, out: torch.Tensor) -> None:
        self.seen += 1


def check_phases_step(v: str | Variant) -> None:
    """A few real iterations through the trainer's PhaseRunner, in fp32 and under bf16 autocast, and with
    D seen through an augmentation: finite float logs, and both networks change; the D phase calls D on
    the real batch as given (what adaptive augmentation steers by)."""
    v = _variant(v)
    for cfg in _configs(v):
        watch = _Watch()
        for iters, kw in ((3, {}), (2, {"precision": "bf16"}), (1, {"augment": watch})):
            runner = _runner(v, cfg, **kw)
            G, D = runner.G, runner.D
            before = {n: [p.detach().clone() for p in m.parameters()] for n, m in (("G", G), ("D", D))}
            where = f"{v.name} ({cfg.num_classes} classes, {kw or 'fp32'})"
            for step in range(iters):
                logs = runner.run(_Batches(cfg), step)
                assert logs and all(isinstance(x, float) for x in logs.values()), f"{where}: logs must be floats, got {logs}"
            for n, m in (("G", G), ("D", D)):
                assert any(not torch.equal(a, b.detach()) for a, b in zip(before[n], m.parameters())), f"{where}: {n} never changed"
                assert all(torch.isfinite(p).all() for p in m.parameters()), f"{where}: {n} has non-finite weights"
                assert all(p.requires_grad for p in m.parameters() if any(p is q for q in runner._trainable[n])), \
                    f"{where}: {n} was left frozen after an iteration"
        assert watch.seen, (f"{v.name}: the D phase never calls D on its `real` argument as given (a concatenation "
                            "with the fakes?), so adaptive augmentation (augment=auto on small data) cannot see how "
                            "sure D is of the reals and stays off; call D(real)")


def check_hooks(v: str | Variant) -> None:
    """Every declared hook is called by the trainer's code: make_optimizers once (its optimisers and
    schedulers are the ones stepped), post_step after every optimiser step; and no hook nothing calls."""
    v = _variant(v)
    registry._check_hooks(v)  # e.g. a train_step left over from API 1: refused
    cfg = tiny_config(v)
    calls: dict[str, list] = {"make_optimizers": [], "post_step": [], "opt_G": [], "opt_D": []}
    hooks = {}
    if v.make_optimizers is not None:
        def counting_make(G, D, c, _inner=v.make_optimizers):
            calls["make_optimizers"].append(1)
            return _inner(G, D, c)
        hooks["make_optimizers"] = counting_make
    if v.post_step is not None:
        def counting_post(phase, *, G, D, cfg, step, _inner=v.post_step):
            calls["post_step"].append(phase)
            return _inner(phase, G=G, D=D, cfg=cfg, step=step)
        hooks["post_step"] = counting_post
    w = dataclasses.replace(v, **hooks)
    runner = _runner(w, cfg)
    for net in ("G", "D"):
        opt = getattr(runner.opts, net)
        opt.register_step_post_hook(lambda *_, n=net: calls[f"opt_{n}"].append(1))
    epochs = [getattr(s, "last_epoch", None) for s in runner.opts.schedulers]
    steps = 3
    for step in range(steps):
        runner.run(_Batches(cfg), step)
    reg = {ph: (net, int(getattr(cfg, e)) if isinstance(e, str) else e) for ph, (net, e) in v.reg_phases.items()}
    due = {net: sum(1 for s in range(steps) for _, (n, e) in reg.items() if n == net and s % e == 0) for net in ("G", "D")}
    want = {"D": steps * cfg.n_critic + due["D"], "G": steps * cfg.n_gen + due["G"]}
    got = {"D": len(calls["opt_D"]), "G": len(calls["opt_G"])}
    assert got == want, f"{v.name}: optimiser steps per network {got}, want {want}"
    if v.make_optimizers is not None:
        assert calls["make_optimizers"] == [1], f"{v.name}: make_optimizers was called {len(calls['make_optimizers'])} times"
    if v.post_step is not None:
        assert len(calls["post_step"]) == want["D"] + want["G"], f"{v.name}: post_step ran {len(calls['post_step'])} times"
    for s, e0 in zip(runner.opts.schedulers, epochs):
        if e0 is not None:
            assert s.last_epoch == e0 + steps, f"{v.name}: a scheduler stepped {s.last_epoch - e0} times in {steps} iterations"


def check_conditional(v: str | Variant) -> None:
    """When the variant builds with num_classes > 0: G(z, c) depends on c, and so does D(x, c) if D takes c."""
    v = _variant(v)
    cfg = conditional_config(v)
    if cfg is None:
        return
    torch.manual_seed(0)
    G, D = build_models(v, cfg)
    G.eval(), D.eval()
    z = torch.randn(cfg.batch_size, cfg.z_dim).repeat(2, 1)
    labels = torch.cat([torch.zeros(cfg.batch_size), torch.ones(cfg.batch_size)]).long()
    with torch.no_grad():
        for m in [*G.modules(), *D.modules()]:  # a fresh class embedding may start class-blind (gains of 1)
            if isinstance(m, nn.Embedding):
                for p in m.parameters():
                    p.add_(torch.randn_like(p))
        x = call_G(G, z, labels)
        assert not torch.equal(x[: cfg.batch_size], x[cfg.batch_size :]), f"{v.name}: G(z, c) ignores c"
        if not _takes_labels(D):  # e.g. AC-GAN: D predicts the class; only its loss can use the labels
            return
        real = _real(cfg, cfg.batch_size).repeat(2, *([1] * (len(x.shape) - 1)))
        s = D(real, labels).flatten()
    assert not torch.equal(s[: cfg.batch_size], s[cfg.batch_size :]), f"{v.name}: D(x, c) ignores c"


def check_state_dict_roundtrip(v: str | Variant) -> None:
    """G saved as safetensors and loaded into a fresh build gives identical outputs."""
    from safetensors.torch import load, save

    v = _variant(v)
    for cfg in _configs(v):
        torch.manual_seed(0)
        G, _ = build_models(v, cfg)
        G.train()  # move buffers (BN stats, tracked means) away from their initial values
        with torch.no_grad():
            for _ in range(2):
                call_G(G, torch.randn(cfg.batch_size, cfg.z_dim), _labels(cfg, cfg.batch_size))
        G.eval()
        torch.manual_seed(123)
        G2, _ = build_models(v, cfg)
        G2.load_state_dict(load(save({k: t.contiguous() for k, t in G.state_dict().items()})), strict=True)
        G2.eval()
        z, c = torch.randn(cfg.batch_size, cfg.z_dim), _labels(cfg, cfg.batch_size)
        with torch.no_grad():
            torch.manual_seed(7)
            a = call_G(G, z, c)
            torch.manual_seed(7)
            b = call_G(G2, z, c)
        assert torch.equal(a, b), f"{v.name}: outputs differ after a safetensors save/load round trip (max diff {(a - b).abs().max()})"


def check_determinism(v: str | Variant) -> None:
    """The same seed gives the same networks, the same outputs and the same training, bit for bit."""
    v = _variant(v)
    cfg = tiny_config(v)
    outs, params = [], []
    for _ in range(2):
        runner = _runner(v, cfg, seed=42)
        runner.G.eval()
        with torch.no_grad():
            outs.append(call_G(runner.G, torch.randn(cfg.batch_size, cfg.z_dim), _labels(cfg, cfg.batch_size)))
        runner.G.train()
        torch.manual_seed(1)
        for step in range(2):
            runner.run(_Batches(cfg), step)
        params.append(torch.cat([p.detach().flatten() for p in [*runner.G.parameters(), *runner.D.parameters()]]))
    assert torch.equal(*outs), f"{v.name}: the same seed gave different outputs"
    assert torch.equal(*params), f"{v.name}: the same seed trained to different weights"


def check_resume_exact(v: str | Variant) -> None:
    """G, D, optimiser and scheduler state plus the RNG are everything a run needs: 2 + 2 iterations
    resumed from copies of them equal 4 straight iterations (state hidden elsewhere would break resume)."""
    v = _variant(v)
    cfg = tiny_config(v)

    def state(r: PhaseRunner) -> dict:
        return copy.deepcopy({"G": r.G.state_dict(), "D": r.D.state_dict(), "opts": r.opts.state_dict(),
                              "rng": torch.get_rng_state()})

    a = _runner(v, cfg, seed=5)
    for step in range(2):
        a.run(_Batches(cfg), step)
    saved = state(a)
    for step in range(2, 4):
        a.run(_Batches(cfg), step)
    b = _runner(v, cfg, seed=99)
    b.G.load_state_dict(saved["G"]), b.D.load_state_dict(saved["D"]), b.opts.load_state_dict(saved["opts"])
    torch.set_rng_state(saved["rng"])
    for step in range(2, 4):
        b.run(_Batches(cfg), step)
    for n in ("G", "D"):
        sa, sb = getattr(a, n).state_dict(), getattr(b, n).state_dict()
        diff = [k for k in sa if not torch.equal(sa[k], sb[k])]
        assert not diff, f"{v.name}: resuming from saved state diverged in {n} ({diff[:3]}): keep all state in G, D or the optimisers"


def check_capabilities(v: str | Variant) -> None:
    """A generator claiming a mapping network honours mapping/synthesis/num_ws/w_avg."""
    v = _variant(v)
    cfg = tiny_config(v)
    G, _ = build_models(v, cfg)
    if "mapping" not in capabilities(G):
        return
    G.eval()
    z = torch.randn(2, cfg.z_dim)
    with torch.no_grad():
        w = G.mapping(z)
        assert w.shape[0] == 2 and G.w_avg.shape == w.shape[1:], f"{v.name}: mapping(z) and w_avg shapes disagree"
        ws = w[:, None].repeat(1, G.num_ws, 1)
        torch.manual_seed(0)
        a = G.synthesis(ws)
        torch.manual_seed(0)
        b = G(z)
    assert torch.allclose(a, b, atol=1e-5), f"{v.name}: synthesis(mapping(z)) differs from G(z) in eval mode"


CHECKS: list[Callable[[str | Variant], None]] = [
    check_output_shape_and_range, check_phases_step, check_hooks, check_conditional, check_state_dict_roundtrip,
    check_determinism, check_resume_exact, check_capabilities,
]


def check_variant(v: str | Variant) -> None:
    """Run every check; raises AssertionError (or PluginError) naming the variant and what is wrong."""
    for check in CHECKS:
        check(v)


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or [e.name for e in registry.entries()]
    failed = 0
    for name in names:
        for check in CHECKS:
            try:
                check(name)
                print(f"ok    {name}: {check.__name__}")
            except Exception as e:  # report every failure, then exit non-zero
                failed += 1
                print(f"FAIL  {name}: {check.__name__}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
