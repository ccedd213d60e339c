import pytest
import torch
from torch import nn

from ganhub import augment
from ganhub.augment import (
    AUGMENT_AUTO_BELOW,
    AdaptiveAugment,
    AugmentedD,
    DiffAugment,
    parse_policy,
    resolve_policy,
    unwrap,
)
from ganhub.errors import ConfigError


def images(b=6, c=3, h=16, w=16, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_dtype_and_change(policy, channels):
    x = images(c=channels, h=16, w=12)
    torch.manual_seed(1)
    y = DiffAugment(policy)(x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.is_contiguous()
    assert not torch.equal(y, x)  # something was applied (each draws per image; 6 images never all identity)


def test_gradients_flow_to_every_pixel_that_survives():
    x = images().requires_grad_(True)
    torch.manual_seed(0)
    DiffAugment("color,translation,cutout")(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # cutout zeroes a quarter of each image, translation drops up to 1/8 per side: most pixels keep a gradient
    assert (x.grad != 0).float().mean() > 0.3


def test_deterministic_under_the_global_rng_and_different_per_seed():
    x, aug = images(), DiffAugment("color,translation,cutout")
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    b = aug(x)
    torch.manual_seed(4)
    c = aug(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_each_image_gets_its_own_draw():
    x = images(b=1).expand(8, -1, -1, -1)
    torch.manual_seed(0)
    y = DiffAugment("translation,cutout")(x)
    assert len({tuple(v.flatten()[:64].tolist()) for v in y}) > 1


def test_translation_is_a_shift_with_zero_fill():
    x = torch.arange(64.0).reshape(1, 1, 8, 8) + 1  # all non-zero; 8 // 8 = shifts in {-1, 0, 1}
    for seed in range(10):
        torch.manual_seed(seed)
        y = augment.translation(x)[0, 0]
        found = [
            (dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
            if torch.equal(y, shifted(x[0, 0], dy, dx))
        ]
        assert len(found) == 1


def shifted(img, dy, dx):
    """out[i, j] = img[i + dy, j + dx], 0 outside."""
    H, W = img.shape
    out = torch.zeros_like(img)
    for i in range(H):
        for j in range(W):
            if 0 <= i + dy < H and 0 <= j + dx < W:
                out[i, j] = img[i + dy, j + dx]
    return out


def test_cutout_zeroes_one_clipped_square_of_half_the_side():
    x = torch.ones(64, 1, 16, 16)
    torch.manual_seed(0)
    y = augment.cutout(x)[:, 0]
    zeros = (y == 0).float()
    rows, cols = zeros.sum(2), zeros.sum(1)  # (B, H) zeros per row, (B, W) per column
    assert ((rows == 0) | (rows <= 8)).all() and ((cols == 0) | (cols <= 8)).all()
    assert zeros.sum((1, 2)).max() == 64 and zeros.sum((1, 2)).min() >= 16  # full 8x8, or clipped to >= 4x4
    assert set(y.unique().tolist()) == {0.0, 1.0}


def test_color_on_grey_images_keeps_one_channel_and_range_shift():
    x = torch.zeros(100, 1, 8, 8)
    torch.manual_seed(0)
    y = augment.color(x)
    # a constant image: saturation and contrast do nothing, brightness shifts by U(-0.5, 0.5)
    per_image = y.flatten(1)
    assert (per_image.std(1) < 1e-6).all() and per_image[:, 0].abs().max() <= 0.5
    assert per_image[:, 0].min() < -0.3 and per_image[:, 0].max() > 0.3


def test_works_under_bfloat16():
    x = images().bfloat16()
    torch.manual_seed(0)
    assert DiffAugment()(x).dtype == torch.bfloat16


def test_policy_parsing():
    assert parse_policy(" Color, cutout ") == "color,cutout"
    assert parse_policy("cutout,color,cutout") == "cutout,color"
    assert parse_policy("AUTO") == "auto" and parse_policy("off") == "off"
    for bad in ["colour", "", "color,,cutout", "on", "none"]:
        with pytest.raises(ConfigError, match="use auto, off, or a comma list"):
            parse_policy(bad)
    with pytest.raises(ConfigError, match="must be a string"):
        parse_policy(None)
    with pytest.raises(ConfigError, match="resolve it first"):
        DiffAugment("auto")
    with pytest.raises(ConfigError, match="works on images"):
        DiffAugment("color")(torch.zeros(4, 2))


def test_config_check_accepts_what_training_parses():
    """A config's augment field passes check_config exactly when parse_policy (what training runs) does."""
    from ganhub.variant import BaseConfig, check_config

    for text in [" Color, cutout ", "cutout,color,cutout", "AUTO", "off", "translation",
                 "colour", "", "color,,cutout", "on", "none"]:
        try:
            parse_policy(text)
            parses = True
        except ConfigError:
            parses = False
        if parses:
            check_config(BaseConfig(augment=text))
        else:
            with pytest.raises(ConfigError, match="augment"):
                check_config(BaseConfig(augment=text))


def test_resolve_policy_auto_rule():
    assert resolve_policy("auto", AUGMENT_AUTO_BELOW - 1, "image") == "color,translation,cutout"
    assert resolve_policy("auto", AUGMENT_AUTO_BELOW, "image") is None
    assert resolve_policy("auto", 10, "points") is None
    assert resolve_policy("off", 10, "image") is None
    assert resolve_policy("translation", 60_000, "image") == "translation"
    with pytest.raises(ConfigError, match="2-D points"):
        resolve_policy("color", 10, "points")
    with pytest.raises(ConfigError, match="unknown part 'flip'"):
        resolve_policy("flip", 10, "image")


class TinyD(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.embed = nn.Embedding(5, 4)
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, x, c=None):
        h = self.conv(x).mean((2, 3))
        return h.sum(1) if c is None else (h * self.embed(c)).sum(1)


def test_augmented_d_applies_fn_and_passes_labels():
    D = TinyD()
    calls = []

    def fn(x):
        calls.append(x.shape)
        return x * 0

    wrapped = AugmentedD(D, fn)
    x, c = images(b=4), torch.tensor([0, 1, 2, 3])
    assert torch.allclose(wrapped(x, c), D(x * 0, c)) and calls == [x.shape]
    assert torch.allclose(wrapped(x), D(x * 0))


def test_augmented_d_keeps_state_dict_keys_and_reaches_d():
    D = TinyD()
    wrapped = AugmentedD(D, DiffAugment("color"))
    assert list(wrapped.state_dict()) == list(D.state_dict())  # no "module." prefix
    assert [id(p) for p in wrapped.parameters()] == [id(p) for p in D.parameters()]
    wrapped.requires_grad_(False)
    assert not any(p.requires_grad for p in D.parameters())
    wrapped.eval()
    assert not D.training
    assert wrapped.embed is D.embed and wrapped.seen is D.seen  # attributes looked up on D
    other = TinyD()
    AugmentedD(other, lambda x: x).load_state_dict(D.state_dict())
    assert torch.equal(other.conv.weight, D.conv.weight)
    assert unwrap(wrapped) is D and unwrap(D) is D
    with pytest.raises(AttributeError):
        _ = wrapped.no_such_thing


def test_gradients_reach_g_and_d_through_the_wrapper():
    G = nn.Linear(8, 3 * 16 * 16)
    D = TinyD()
    wrapped = AugmentedD(D, DiffAugment())
    torch.manual_seed(0)
    fake = torch.tanh(G(torch.randn(4, 8))).view(4, 3, 16, 16)
    wrapped(fake).mean().backward()
    assert G.weight.grad.abs().sum() > 0 and D.conv.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------ strength p, and ADA's rule for it
def test_p_one_is_diffaugment_as_published_and_p_zero_touches_nothing():
    x = images()
    torch.manual_seed(7)
    expected = augment.cutout(augment.translation(augment.color(x)))
    torch.manual_seed(7)
    assert torch.equal(DiffAugment("color,translation,cutout", p=1)(x), expected)  # and draws nothing extra
    torch.manual_seed(7)
    before = torch.get_rng_state()
    assert DiffAugment("color,translation,cutout", p=0)(x) is x
    assert torch.equal(torch.get_rng_state(), before)  # p = 0 is "off", down to the random numbers
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\], got 1.5"):
        DiffAugment("color", p=1.5)


def test_p_picks_each_image_independently_with_probability_p():
    x = torch.ones(2000, 1, 8, 8)  # cutout always zeroes part of an image of ones
    torch.manual_seed(0)
    y = DiffAugment("cutout", p=0.3)(x)
    hit = (y != x).flatten(1).any(1)
    assert 600 - 5 * 20.5 < int(hit.sum()) < 600 + 5 * 20.5  # binomial(2000, 0.3): mean 600, sd 20.5
    assert torch.equal(y[~hit], x[~hit])


def scores(positive: int, negative: int) -> torch.Tensor:
    return torch.tensor([1.5] * positive + [-0.5] * negative)


def test_ada_rule_raises_p_while_d_is_sure_of_the_reals_and_lowers_it_otherwise():
    a = AdaptiveAugment("translation", target=0.6, interval=4, kimg=1)  # a global batch of 10: +-0.04 per interval
    assert a.p == 0
    for step in range(1, 9):  # r_t = (9 - 1) / 10 = 0.8 > 0.6: up, at steps 4 and 8 only
        a.observe(scores(9, 1))
        a.adjust(step, 10)
        assert a.p == pytest.approx(0.04 * (step // 4))
    assert a.r_t == pytest.approx(0.8)
    for step in range(9, 13):  # r_t = 0.2 < 0.6: down
        a.observe(scores(6, 4))
        a.adjust(step, 10)
    assert a.p == pytest.approx(0.04) and a.r_t == pytest.approx(0.2)
    for step in range(13, 21):  # and never below 0
        a.observe(scores(0, 10))
        a.adjust(step, 10)
    assert a.p == 0
    a.p = 0.99
    for step in range(21, 25):  # nor above 1
        a.observe(scores(10, 0))
        a.adjust(step, 10)
    assert a.p == 1
    for step in range(25, 29):  # nothing observed (a loss that never calls D on the real batch): p stays
        a.adjust(step, 10)
    assert a.p == 1 and a.r_t == pytest.approx(1.0)


def test_ada_rule_goes_by_every_ranks_counts():
    a = AdaptiveAugment("translation", target=0.6, interval=1, kimg=1)
    other_rank = torch.tensor([-10, 10])  # another rank's (sum of signs, count): all its reals scored negative
    a.observe(scores(10, 0))  # this rank: r = 1 alone; with the other rank's counts, 0
    a.adjust(1, 20, reduce=lambda t: t + other_rank)
    assert a.r_t == 0 and a.p == 0


def test_ada_state_round_trips_mid_interval_and_bad_state_is_refused():
    a = AdaptiveAugment("translation", target=0.6, interval=4, kimg=1)
    for step in range(1, 7):
        a.observe(scores(9, 1))
        a.adjust(step, 10)
    state = a.state_dict()
    assert state == {"p": pytest.approx(0.04), "signs": 16, "count": 20}  # steps 5 and 6 counted, not yet used
    b = AdaptiveAugment("translation", target=0.6, interval=4, kimg=1)
    b.load_state_dict(state)
    for x in (a, b):
        for step in (7, 8):
            x.observe(scores(5, 5))
            x.adjust(step, 10)
    assert a.state_dict() == b.state_dict() and a.r_t == b.r_t == pytest.approx(0.4)  # (16 + 0) / 40
    for bad in ({"p": 2.0, "signs": 0, "count": 0}, {"p": 0.5, "signs": 5, "count": 2},
                {"p": 0.5, "signs": 0.5, "count": 2}):
        with pytest.raises(ConfigError, match="out of range"):
            b.load_state_dict(bad)
    with pytest.raises(ConfigError, match=r"target must be in \(0, 1\)"):
        AdaptiveAugment("translation", target=0)


def test_augmented_d_shows_its_adaptive_augmentation_d_on_the_real_batch_only():
    D = TinyD()
    a = AdaptiveAugment("translation", interval=1)
    wrapped = AugmentedD(D, a)
    real, fake = images(b=4), images(b=4, seed=1)
    wrapped(fake)
    wrapped(real)
    assert a.state_dict()["count"] == 0  # not told which batch is real: nothing counted
    wrapped.reals = real
    wrapped(fake)
    out = wrapped(real)
    wrapped(real.clone())  # the same values in another tensor (e.g. R1's copy with grad) are not the batch
    want = int((out > 0).sum() - (out < 0).sum())
    assert a.state_dict() == {"p": 0.0, "signs": want, "count": 4}


def test_a_d_that_returns_a_tuple_is_read_by_its_first_element_the_score():
    class ACD(TinyD):  # AC-GAN's D: (source score, class logits)
        def forward(self, x, c=None):
            return torch.full((x.shape[0],), -1.0), torch.zeros(x.shape[0], 5)

    a = AdaptiveAugment("translation", interval=1)
    wrapped = AugmentedD(ACD(), a)
    wrapped.reals = real = images(b=3)
    wrapped(real)
    assert a.state_dict() == {"p": 0.0, "signs": -3, "count": 3}
