import io

import pytest
import torch
from PIL import Image

from ganhub import registry
from ganhub.errors import GanhubError
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
