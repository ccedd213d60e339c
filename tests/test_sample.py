import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ganhub import registry
from ganhub import sample as S
from ganhub.errors import ConfigError, GanhubError
from ganhub.sample import gif_bytes, interpolate, sample, slerp, style_mix, to_grid
from ganhub.testing import tiny_config
from ganhub.variant import build_models, capabilities


def tiny_G(name):
    v = registry.get(name)
    torch.manual_seed(0)
    G, _ = build_models(v, tiny_config(v))
    return G.eval()


def test_same_seed_same_images_independent_of_batch_and_rng():
    G = tiny_G("stylegan-lite")  # has per-layer noise: sampling must still be deterministic
    a = sample(G, 6, seed=5)
    torch.manual_seed(999)
    b = sample(G, 6, seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, sample(G, 6, seed=6))
    state = torch.get_rng_state()
    sample(G, 3, seed=1)
    assert torch.equal(state, torch.get_rng_state()), "sampling must not disturb the caller's RNG"


@pytest.mark.parametrize("kind", ["mps", "cuda"])
def test_rng_kept_restores_an_accelerators_rng_too(monkeypatch, kind):
    """Sampling and evaluating on an MPS or CUDA G leave that device's RNG as they found it, not only the
    CPU's. This machine has neither, so torch's device module for `kind` is a stand-in holding one state."""

    class Device:
        state = torch.tensor([1], dtype=torch.uint8)

        @staticmethod
        def get_rng_state(device=None):
            return Device.state.clone()

        @staticmethod
        def set_rng_state(new_state, device=None):
            Device.state = new_state.clone()

    real = torch.get_device_module
    monkeypatch.setattr(torch, "get_device_module", lambda t=None: Device if t == kind else real(t))
    cpu = torch.get_rng_state()
    with S.rng_kept(torch.device(kind, 0)):
        Device.state = torch.tensor([2], dtype=torch.uint8)  # what a draw on the device would do
        torch.rand(3)
    assert Device.state.item() == 1, f"the {kind} RNG was left changed"
    assert torch.equal(cpu, torch.get_rng_state())


def test_slerp_endpoints_and_norm():
    a, b = torch.randn(1, 64), torch.randn(1, 64)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    mid = slerp(a / a.norm(), b / b.norm(), 0.5)
    assert torch.allclose(mid.norm(), torch.tensor(1.0), atol=1e-5)  # stays on the sphere, unlike lerp


@pytest.mark.parametrize("method", ["lerp", "slerp"])
def test_interpolate_frames_and_gif(method):
    G = tiny_G("dcgan")
    frames = interpolate(G, 1, 2, frames=7, method=method)
    assert frames.shape == (7, 1, 32, 32)
    assert torch.allclose(frames[0], sample(G, 1, seed=1)[0], atol=1e-5)
    assert torch.allclose(frames[-1], sample(G, 1, seed=2)[0], atol=1e-5)


def test_gif_plays_forward_then_back():
    frames = torch.linspace(-1, 1, 7)[:, None, None, None].expand(7, 1, 8, 8)  # distinct grey levels
    gif = Image.open(io.BytesIO(gif_bytes(frames)))
    assert gif.format == "GIF" and gif.n_frames == 12 and gif.info["loop"] == 0  # 7 forward + 5 back


def test_interpolate_rejects_bad_input():
    G = tiny_G("dcgan")
    with pytest.raises(GanhubError, match="lerp' or 'slerp"):
        interpolate(G, 1, 2, 5, "cubic")
    with pytest.raises(GanhubError, match="at least 2 frames"):
        interpolate(G, 1, 2, 1)


def test_style_mix_and_truncation_need_a_mapping_network():
    G = tiny_G("stylegan-lite")
    assert "mapping" in capabilities(G) and "mapping" not in capabilities(tiny_G("dcgan"))
    grid = style_mix(G, [1, 2, 3], [4, 5], crossover=2)
    assert grid.size == (3 * 34 + 2, 4 * 34 + 2)  # (1 + 2 columns) x (1 + 3 rows) tiles
    full, trunc = sample(G, 8, seed=0), sample(G, 8, seed=0, truncation=0.0)
    assert not torch.equal(full, trunc)
    assert torch.allclose(trunc[0], trunc[1], atol=1e-4)  # psi = 0: every sample is the mean w's image (noise aside)
    with pytest.raises(GanhubError, match="mapping network"):
        style_mix(tiny_G("dcgan"), [1], [2])
    with pytest.raises(GanhubError, match="mapping network"):
        sample(tiny_G("dcgan"), 2, truncation=0.7)
    with pytest.raises(GanhubError, match="crossover"):
        style_mix(G, [1], [2], crossover=G.num_ws)


def test_grid_shapes():
    x = torch.rand(10, 3, 32, 32) * 2 - 1
    assert to_grid(x, nrow=5).size == (5 * 34 + 2, 2 * 34 + 2)
    assert to_grid(torch.randn(50, 2)).size == (320, 320)


# ---------------------------------------------------------------------------------------------------------
# Conditional generators, streaming, limits, output paths



class CondG(nn.Module):
    """A tiny conditional G: the image's mean encodes the class, the pattern encodes z."""

    z_dim, num_classes = 4, 3

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 16)
        self.batches = []

    def forward(self, z, c):
        assert c.dtype == torch.int64 and c.shape == (len(z),)
        self.batches.append(len(z))
        return (c.float() - 1)[:, None, None, None] * 0.6 + 0.1 * torch.tanh(self.lin(z)).view(-1, 1, 4, 4)


def cls(x):  # the class a CondG image shows
    return (x.mean((1, 2, 3)) / 0.6 + 1).round().long()


def test_latents_of_small_draws_are_unchanged():
    # n * z_dim <= LATENT_BLOCK is one torch.randn call: seeds recorded before blocks existed still mean the same z
    assert torch.equal(S.latents(100, 64, 7), torch.randn(100, 64, generator=torch.Generator().manual_seed(7)))


def test_conditional_labels_int_tensor_and_random(monkeypatch):
    G = CondG()
    assert torch.equal(cls(sample(G, 10, seed=1, labels=2)), torch.full((10,), 2))
    want = torch.tensor([0, 1, 2, 2, 1, 0])
    assert torch.equal(cls(sample(G, 6, seed=1, labels=want)), want)
    a, b = cls(sample(G, 300, seed=4)), cls(sample(G, 300, seed=4))
    assert torch.equal(a, b) and set(a.tolist()) == {0, 1, 2}  # random classes, deterministic, all present
    assert not torch.equal(a, cls(sample(G, 300, seed=5)))
    assert torch.equal(a, S.random_labels(300, 3, 4))
    for bad, msg in [(3, "from 0 to 2"), (-1, "from 0 to 2"), (torch.tensor([0, 1]), r"shape \(6,\)"),
                     (torch.tensor([0.0] * 6), "integer"), (torch.tensor([0, 1, 2, 3, 0, 0]), "from 0 to 2"),
                     ("cat", "class")]:
        with pytest.raises(ConfigError, match=msg):
            sample(G, 6, seed=0, labels=bad)
    with pytest.raises(ConfigError, match="unconditional"):
        sample(tiny_G("dcgan"), 2, seed=0, labels=1)


def test_generate_takes_classes_and_draws_them_when_missing():
    G = CondG()
    z = S.latents(5, 4, 0)
    assert torch.equal(cls(S.generate(G, z, 1)), torch.ones(5, dtype=torch.long))
    assert torch.equal(cls(S.generate(G, z, torch.tensor([2, 2, 0, 0, 1]))), torch.tensor([2, 2, 0, 0, 1]))
    assert torch.equal(cls(S.generate(G, z, seed=3)), S.random_labels(5, 3, 3))
    with pytest.raises(ConfigError, match=r"shape \(N, 4\)"):
        S.generate(G, torch.zeros(5, 3))


def test_class_grid_one_row_per_class():
    G = CondG()
    grid = S.class_grid(G, per_class=4, seed=0)
    assert grid.size == (4 * 6 + 2, 3 * 6 + 2)  # 4 columns x 3 rows of 4 px tiles, 2 px padding
    arr = torch.tensor(np.asarray(grid), dtype=torch.float)
    rows = [arr[2 + 6 * r : 6 + 6 * r, 2:-2].mean().item() for r in range(3)]
    assert rows[0] < rows[1] < rows[2]  # class 0 darkest, class 2 brightest
    with pytest.raises(ConfigError, match="unconditional"):
        S.class_grid(tiny_G("dcgan"), 2)
    G.num_classes = 1000
    with pytest.raises(ConfigError, match="at most 1024"):
        S.class_grid(G, per_class=2)


def test_interpolation_keeps_one_class():
    G = CondG()
    frames = interpolate(G, 1, 2, frames=5, label=2)
    assert torch.equal(cls(frames), torch.full((5,), 2))
    first = interpolate(G, 1, 2, frames=3)  # no label: seed_a's class, so frame 0 is seed_a's sample
    assert torch.allclose(first[0], sample(G, 1, seed=1)[0])


def test_streaming_equals_sample_in_bounded_chunks(monkeypatch):
    G = CondG()
    monkeypatch.setattr(S, "LATENT_BLOCK", 4 * 50)  # latent blocks of 50 rows, chunks of 256 images
    whole = S.generate(G, S.latents(700, 4, 3), S.random_labels(700, 3, 3), seed=3)
    G.batches.clear()
    chunks = list(S.iter_samples(G, 700, seed=3))
    assert [len(c) for c in chunks] == [256, 256, 188] and max(G.batches) == 256
    assert torch.equal(torch.cat(chunks), whole)
    big = S.iter_samples(G, 10**12, seed=0)  # lazy: any n, one chunk at a time
    assert next(big).shape == (256, 1, 4, 4)


def test_write_samples_directory_streams(tmp_path, monkeypatch):
    G = CondG()
    out = tmp_path / "pngs"
    G.batches.clear()
    assert S.write_samples(G, 600, 2, out) == out
    files = sorted(out.iterdir())
    assert [f.name for f in files[:2]] == ["000000.png", "000001.png"] and len(files) == 600
    assert max(G.batches) <= S.BATCH
    want = S.to_uint8(sample(G, 600, seed=2))
    for i in (0, 299, 599):
        got = torch.from_numpy(np.array(Image.open(files[i])))[None]
        assert torch.equal(got, want[i])


def test_grid_limit_is_checked_before_any_work(tmp_path):
    G = CondG()
    with pytest.raises(ConfigError, match="at most 1024"):
        S.write_samples(G, 10_000_000, 0, tmp_path / "grid.png")
    assert G.batches == [] and not (tmp_path / "grid.png").exists()
    with pytest.raises(ConfigError, match="at most 1024"):
        to_grid(torch.zeros(1025, 1, 4, 4))
    assert S.write_samples(G, 1024, 0, tmp_path / "grid.png").stat().st_size > 0


def test_sample_refuses_what_cannot_fit_in_memory(monkeypatch):
    monkeypatch.setattr(S, "MAX_IN_MEMORY_BYTES", 64 * 16 * 4)
    with pytest.raises(ConfigError, match="GiB in memory.*directory"):
        sample(CondG(), 65, seed=0)
    assert sample(CondG(), 64, seed=0).shape == (64, 1, 4, 4)


@pytest.mark.parametrize("kwargs, msg", [
    ({"n": 0}, "number of samples"), ({"n": -5}, "number of samples"), ({"n": 2.5}, "number of samples"),
    ({"seed": -1}, "seed"), ({"seed": 2**64}, "seed"), ({"seed": "x"}, "seed"),
    ({"truncation": float("nan")}, "truncation"), ({"truncation": float("inf")}, "truncation"),
    ({"truncation": 5.0}, "truncation"), ({"truncation": 0.5}, "mapping network"),
])
def test_bad_counts_seeds_and_truncation(kwargs, msg):
    args = {"n": 2, "seed": 0, "truncation": 1.0} | kwargs
    with pytest.raises(ConfigError, match=msg):
        sample(tiny_G("dcgan"), args["n"], args["seed"], truncation=args["truncation"])


def test_output_paths_fail_in_one_line_and_keep_the_old_grid(tmp_path, monkeypatch):
    G = CondG()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, msg in [(a_file, "is a file"), (a_file / "sub", "a file stands in its path"),
                     (a_file / "g.png", "a file stands in its path"), (tmp_path, "is a directory")]:
        target = out if out != tmp_path else tmp_path.with_suffix(".png")
        if out == tmp_path:
            target.mkdir()
        with pytest.raises(S.OutputError, match=msg):
            S.write_samples(G, 4, 0, target)
    assert a_file.read_text() == "x"
    with pytest.raises(S.OutputError, match="cannot"):
        S.write_samples(G, 4, 0, Path("/proc/ganhub-test/x"))
    for empty in ("", " "):
        with pytest.raises(S.OutputError, match="no output path"):
            S.write_samples(G, 4, 0, empty)
        with pytest.raises(S.OutputError, match="no output path"):
            S.save_images(torch.zeros(2, 1, 4, 4), empty)

    grid = tmp_path / "grid.png"
    S.write_samples(G, 4, 0, grid)
    before = grid.read_bytes()

    def full(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fdopen", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(S.OutputError, match="disk is full"):
        S.write_samples(G, 9, 1, grid)
    assert grid.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".grid"))  == []
    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(S.OutputError, match="disk is full"):
        S.write_samples(G, 9, 1, tmp_path / "dir")
    assert list((tmp_path / "dir").iterdir()) == []


class CondMapG(nn.Module):
    """A conditional generator with a mapping network: w = z + 10 c, every style layer adds its w."""

    z_dim, num_classes, num_ws = 2, 2, 2

    def __init__(self):
        super().__init__()
        self.register_buffer("w_avg", torch.zeros(2))
        self.scale = nn.Parameter(torch.ones(()))

    def mapping(self, z, c):
        return z + 10 * c[:, None].float()

    def synthesis(self, w):  # (B, num_ws, 2) -> (B, 1, 2, 2) in [-1, 1]
        w = w if w.dim() == 3 else w[:, None].expand(-1, self.num_ws, -1)
        return torch.tanh(self.scale * w.sum(1) / 40)[:, None, None, :].expand(-1, 1, 2, 2)

    def forward(self, z, c):
        return self.synthesis(self.mapping(z, c))


def test_style_mix_and_truncation_with_classes():
    G = CondMapG()
    a, b = style_mix(G, [1], [2], crossover=1, label=0), style_mix(G, [1], [2], crossover=1, label=1)
    assert a.size == b.size == (2 * 4 + 2, 2 * 4 + 2) and np.asarray(a).mean() < np.asarray(b).mean()
    x0, x1 = sample(G, 4, seed=0, labels=0, truncation=0.5), sample(G, 4, seed=0, labels=1, truncation=0.5)
    assert (x1.mean() > x0.mean()).item()
    with pytest.raises(ConfigError, match="from 0 to 1"):
        style_mix(G, [1], [2], label=2)


def test_a_conditional_plugin_samples_by_class():
    v = registry.get("sngan")
    torch.manual_seed(0)
    G, _ = build_models(v, v.make_config(**{**dict(v.test_config), "num_classes": 3}))
    with torch.no_grad():  # at init every class has the same conditional-BatchNorm gain/shift: make them differ
        for name, p in G.named_parameters():
            if "shift" in name:
                p.normal_()
    G.eval()
    a, b = sample(G, 4, seed=0, labels=0), sample(G, 4, seed=0, labels=2)
    assert a.shape == (4, 1, 32, 32) and not torch.equal(a, b)  # same latents, another class
    assert torch.equal(sample(G, 4, seed=0), sample(G, 4, seed=0))
    assert S.class_grid(G, 2, seed=0).size == (2 * 34 + 2, 3 * 34 + 2)


def test_save_grid_is_atomic_and_one_line(tmp_path):
    img = S.class_grid(CondG(), 2, seed=0)
    out = S.save_grid(img, tmp_path / "g.png")
    assert Image.open(out).size == img.size
    blocker = tmp_path / "f"
    blocker.write_text("x")
    with pytest.raises(S.OutputError, match="a file stands in its path"):
        S.save_grid(img, blocker / "g.png")
    assert {p.name for p in tmp_path.iterdir()} == {"g.png", "f"}  # no temp file left behind
