"""The conformance suite every variant gets for free, ours and third-party alike.

In a plugin's own tests:

    from ganhub.testing import check_variant
    def test_conformance():
        check_variant("my-variant")          # or a Variant object not yet installed

or from a shell: `python -m ganhub.testing my-variant` (no names: every installed variant).
Each check builds the variant at its tiny `test_config`, so the whole suite takes seconds per variant.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch

from ganhub import registry
from ganhub.variant import BaseConfig, Variant, build_models, make_config


def _variant(v: str | Variant) -> Variant:
    return registry.get(v) if isinstance(v, str) else registry.validate(v, v.name)


def tiny_config(v: Variant, **extra) -> BaseConfig:
    return make_config(v.config_cls, {**v.test_config, **extra})


def _real(cfg: BaseConfig, n: int) -> torch.Tensor:
    if cfg.data == "points":
        return torch.randn(n, 2)
    return torch.rand(n, cfg.channels, cfg.resolution, cfg.resolution) * 2 - 1


def check_output_shape_and_range(v: str | Variant) -> None:
    """G(z) has shape (B, C, R, R) in [-1, 1] at 32 and 64 px, 1 and 3 channels (and (B, 2) for points)."""
    v = _variant(v)
    combos = [(r, c, "image") for r in (32, 64) for c in (1, 3)] if "image" in v.modalities else []
    combos += [(32, 1, "points")] if "points" in v.modalities else []
    for res, ch, data in combos:
        cfg = tiny_config(v, resolution=res, channels=ch, data=data)
        torch.manual_seed(0)
        G, D = build_models(v, cfg)
        z = torch.randn(cfg.batch_size, cfg.z_dim)
        for mode in ("train", "eval"):
            getattr(G, mode)()
            with torch.no_grad():
                x = G(z)
            want = (cfg.batch_size, 2) if data == "points" else (cfg.batch_size, ch, res, res)
            assert tuple(x.shape) == want, f"{v.name}: G(z) at {res}px/{ch}ch/{data} in {mode} mode has shape {tuple(x.shape)}, want {want}"
            assert torch.isfinite(x).all(), f"{v.name}: G(z) has non-finite values"
            if data == "image" and mode == "eval":
                assert x.min() >= -1 - 1e-6 and x.max() <= 1 + 1e-6, f"{v.name}: G(z) leaves [-1, 1]: [{x.min():.3f}, {x.max():.3f}]"
        with torch.no_grad():
            score = D(_real(cfg, cfg.batch_size))
        assert score.numel() == cfg.batch_size, f"{v.name}: D must return one score per sample, got shape {tuple(score.shape)}"


def check_phases_step(v: str | Variant) -> None:
    """A few real iterations through ganhub.step.PhaseRunner (the trainer's own code): finite losses, and
    every phase changes the network it updates."""
    from ganhub.step import PhaseRunner, make_optimizers

    v = _variant(v)
    cfg = tiny_config(v)
    torch.manual_seed(0)
    G, D = build_models(v, cfg)
    G.train(), D.train()
    runner = PhaseRunner(v, cfg, G, D, make_optimizers(v, G, D, cfg), device="cpu")

    class Batches:
        def next(self):
            return _real(cfg, cfg.batch_size), None

    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in (("G", G), ("D", D))}
    for step in range(3):
        logs = runner.run(Batches(), step)
        assert all(isinstance(x, float) for x in logs.values()), f"{v.name}: logs must be floats, got {logs}"
    for n, m in (("G", G), ("D", D)):
        assert any(not torch.equal(a, b.detach()) for a, b in zip(before[n], m.parameters())), f"{v.name}: {n} never changed"


def check_state_dict_roundtrip(v: str | Variant) -> None:
    """G saved as safetensors and loaded into a fresh build gives identical outputs."""
    from safetensors.torch import load, save

    v = _variant(v)
    cfg = tiny_config(v)
    torch.manual_seed(0)
    G, _ = build_models(v, cfg)
    G.train()  # move buffers (BN stats, tracked means) away from their initial values
    with torch.no_grad():
        for _ in range(2):
            G(torch.randn(cfg.batch_size, cfg.z_dim))
    G.eval()
    torch.manual_seed(123)
    G2, _ = build_models(v, cfg)
    G2.load_state_dict(load(save({k: t.contiguous() for k, t in G.state_dict().items()})), strict=True)
    G2.eval()
    z = torch.randn(cfg.batch_size, cfg.z_dim)
    with torch.no_grad():
        torch.manual_seed(7)
        a = G(z)
        torch.manual_seed(7)
        b = G2(z)
    assert torch.equal(a, b), f"{v.name}: outputs differ after a safetensors save/load round trip (max diff {(a - b).abs().max()})"


def check_determinism(v: str | Variant) -> None:
    """The same seed gives the same networks and the same outputs."""
    v = _variant(v)
    cfg = tiny_config(v)
    outs = []
    for _ in range(2):
        torch.manual_seed(42)
        G, _ = build_models(v, cfg)
        G.eval()
        with torch.no_grad():
            outs.append(G(torch.randn(cfg.batch_size, cfg.z_dim)))
    assert torch.equal(*outs), f"{v.name}: the same seed gave different outputs"


def check_capabilities(v: str | Variant) -> None:
    """A generator claiming a mapping network honours mapping/synthesis/num_ws/w_avg."""
    from ganhub.variant import capabilities

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
    check_output_shape_and_range, check_phases_step, check_state_dict_roundtrip, check_determinism, check_capabilities,
]


def check_variant(v: str | Variant) -> None:
    """Run every check; raises AssertionError naming the variant and what is wrong."""
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
