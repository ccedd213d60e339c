"""Evaluation: torch-fidelity's numbers through ganhub's extractors, class coverage, toy metrics, protocols."""

import json
import math
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch_fidelity
from torch import nn
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from ganhub import extractors
from ganhub.cli import main
from ganhub.data import cache_dir, load_dataset, toy_points
from ganhub.errors import GanhubError
from ganhub.extractors import (
    ExtractorError,
    classifier_dir,
    classifier_input,
    inception_weights,
    load_classifier,
)
from ganhub.metrics import (
    GeneratedImages,
    RealImages,
    class_coverage,
    conditional_accuracy,
    evaluate,
    format_table,
    toy_metrics,
)
from ganhub.sample import latents, sample, to_uint8
from ganhub.source import Loaded, load_generator
from ganhub.variant import BaseConfig


@pytest.fixture(scope="module")
def fmnist_test():
    return load_dataset("fashion-mnist", resolution=32, channels=1, split="test")


@pytest.fixture(scope="module")
def net():
    return load_classifier()


@torch.no_grad()
def features_of(net, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(classifier_input(x))[0] for x in images.split(1000)])


def fidelity(input1, input2, **kw):
    return torch_fidelity.calculate_metrics(
        input1=input1,
        input2=input2,
        feature_extractor="ganhub-fmnist",
        cuda=False,
        verbose=False,
        cache=False,
        save_cpu_ram=True,
        batch_size=500,
        **kw,
    )


# --- FID against closed forms -----------------------------------------------------------------------------


def test_fid_of_two_gaussians_matches_the_closed_form():
    """FID(N(m1, S1), N(m2, S2)) = |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)). With S1 = Q D1 Q^T and
    S2 = Q D2 Q^T (commuting), the trace term is sum(d1 + d2 - 2 sqrt(d1 d2))."""
    rng = np.random.default_rng(0)
    d = 8
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    d1, d2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    closed = float(((m1 - m2) ** 2).sum() + (d1 + d2 - 2 * np.sqrt(d1 * d2)).sum())
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    for rot in (np.eye(d), q):  # diagonal, then rotated covariances
        s1, s2 = rot @ np.diag(d1) @ rot.T, rot @ np.diag(d2) @ rot.T
        got = fid_statistics_to_metric({"mu": m1, "sigma": s1}, {"mu": m2, "sigma": s2}, False)
        assert got["frechet_inception_distance"] == pytest.approx(closed, rel=1e-9)
    # from samples (what the metric sees in practice): converges to the closed form
    x = rng.normal(m1, np.sqrt(d1), size=(200_000, d))
    y = rng.normal(m2, np.sqrt(d2), size=(200_000, d))
    est = fid_statistics_to_metric(
        fid_features_to_statistics(torch.from_numpy(x)),
        fid_features_to_statistics(torch.from_numpy(y)),
        False,
    )
    assert est["frechet_inception_distance"] == pytest.approx(closed, rel=0.02)


@pytest.mark.filterwarnings(
    "ignore::scipy.linalg.LinAlgWarning"
)  # features that never fire make S1 S2 singular
def test_extractor_path_agrees_with_direct_features(fmnist_test, net):
    """calculate_metrics through the registered "ganhub-fmnist" extractor == the same formulas applied by hand
    to features taken straight from the classifier (scipy's sqrtm for FID, the paper's k-NN balls for PR)."""
    a, b = fmnist_test.images[:1000], fmnist_test.images[5000:5600].flip(3)  # two sets that differ
    res = fidelity(RealImages(a), RealImages(b), fid=True, prc=True)
    fa, fb = features_of(net, a).double(), features_of(net, b).double()
    ma, mb = fa.mean(0).numpy(), fb.mean(0).numpy()
    sa, sb = np.cov(fa.numpy(), rowvar=False), np.cov(fb.numpy(), rowvar=False)
    fid = float(((ma - mb) ** 2).sum() + np.trace(sa + sb - 2 * scipy.linalg.sqrtm(sa @ sb).real))
    assert res["frechet_inception_distance"] == pytest.approx(fid, rel=1e-4)

    def inside(x, ref):  # is each x within the k=3 NN radius of some ref sample?
        radius = torch.cdist(ref, ref).kthvalue(4, dim=1).values
        return (torch.cdist(x, ref) <= radius[None]).any(1).double().mean().item()

    assert res["precision"] == pytest.approx(inside(fa.float(), fb.float()), abs=2e-3)
    assert res["recall"] == pytest.approx(inside(fb.float(), fa.float()), abs=2e-3)


def test_real_vs_real_fid_is_near_zero_and_noise_is_far(fmnist_test):
    a, b = RealImages(fmnist_test.images[:1500]), RealImages(fmnist_test.images[1500:3000])
    real = fidelity(a, b, fid=True)["frechet_inception_distance"]
    noise = torch.randint(
        0, 256, (1500, 1, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    far = fidelity(RealImages(noise), b, fid=True)["frechet_inception_distance"]
    assert real < 0.02 * far, (real, far)


# --- precision/recall and the toys ------------------------------------------------------------------------


class ToyG(nn.Module):
    """A "generator" of the ring: z -> a point of one of `modes`, chosen by z, with the ring's std."""

    def __init__(self, modes: torch.Tensor, std: float, z_dim: int = 4):
        super().__init__()
        self.register_buffer("modes", modes)
        self.std, self.z_dim = std, z_dim

    def forward(self, z):
        which = (z[:, 2].abs() * 1e4).long() % len(self.modes)
        return self.modes[which] + self.std * z[:, :2]


def test_precision_recall_and_mode_metrics_on_toys_follow_the_papers():
    """Kynkäänniemi et al. 2019: samples from half the modes have precision ~1 and recall ~0.5; VEEGAN's
    3-std rule finds the 4 modes, and (almost) every sample high quality."""
    ring = toy_points("ring8", n=4000, seed=0)
    half = toy_points("ring8", n=8000, seed=1)
    gen = half.images[half.labels < 4][:4000]
    out = prc_features_to_metric(
        gen, ring.images, prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=True, verbose=False
    )
    assert out["precision"] > 0.95 and 0.45 < out["recall"] < 0.55, out
    tm = toy_metrics(gen, ring.modes, ring.mode_std)
    assert tm["modes_covered"] == 4 and tm["high_quality"] > 0.98

    # the same through evaluate(), as `ganhub eval` runs it on a ring8 run folder
    loaded = Loaded(
        ToyG(ring.modes[:4], ring.mode_std),
        None,
        BaseConfig(data="points", z_dim=4),
        {"variant": "toy", "recipe": {"dataset": "ring8"}},
        Path("toy"),
    )
    m = evaluate(loaded, metrics="pr", n=4000)["metrics"]
    assert m["modes_covered"]["value"] == 4 and m["modes_covered"]["of"] == 8
    assert m["high_quality"]["value"] > 0.98
    assert m["precision"]["value"] > 0.95 and 0.45 < m["recall"]["value"] < 0.55


def test_toy_rules_at_their_edges():
    modes = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    pts = torch.cat([torch.zeros(991, 2), torch.tensor([[10.0, 0.0]] * 7), torch.tensor([[0.0, 0.31]] * 2)])
    tm = toy_metrics(pts, modes, std=0.1)  # 7 of 1000 < 0.8%: mode 2 not covered; 0.31 > 3 std: low quality
    assert (
        tm["modes_covered"] == 1 and tm["per_mode"] == [991, 7] and tm["high_quality"] == pytest.approx(0.998)
    )


# --- class coverage ---------------------------------------------------------------------------------------


def test_class_coverage_rule_and_kl():
    p_data = torch.full((10,), 0.1, dtype=torch.float64)
    half = torch.tensor([0.2] * 5 + [0.0] * 5, dtype=torch.float64)
    cov = class_coverage(half, p_data)
    assert cov["classes"] == 5 and cov["kl"] == pytest.approx(math.log(2), abs=1e-12)
    assert class_coverage(p_data, p_data)["kl"] == 0 and class_coverage(p_data, p_data)["classes"] == 10
    edge = torch.tensor(
        [0.025, 0.0249] + [0.9501 / 8] * 8, dtype=torch.float64
    )  # threshold: 1/4 of the data share (2.5%)
    assert class_coverage(edge, p_data)["classes"] == 9


class ReplayG(nn.Module):
    """A "generator" that replays real images (N, 1, 32, 32) uint8, chosen deterministically by z."""

    def __init__(self, images: torch.Tensor, z_dim: int = 8):
        super().__init__()
        self.register_buffer("images", images)
        self.z_dim = z_dim

    def forward(self, z):
        idx = (z[:, 0].abs() * 1e6).long() % len(self.images)
        return self.images[idx].float() / 127.5 - 1


def fake_loaded(G: nn.Module) -> Loaded:
    return Loaded(
        G,
        None,
        BaseConfig(z_dim=G.z_dim),
        {"variant": "replay", "recipe": {"dataset": "fashion-mnist"}},
        Path("replay"),
    )


def test_a_generator_of_five_classes_covers_five_with_kl_log2(fmnist_test, net):
    keep = torch.isin(
        fmnist_test.labels, torch.tensor([1, 2, 5, 7, 8])
    )  # trouser, pullover, sandal, sneaker, bag
    pool = fmnist_test.images[keep]
    G = ReplayG(pool)
    r = evaluate(fake_loaded(G), metrics=("coverage",), n=1000)
    cov = r["metrics"]["coverage"]["value"]
    assert cov["classes"] == 5 and cov["of"] == 10
    assert sum(cov["histogram"][c] for c in (1, 2, 5, 7, 8)) > 0.95
    # A perfect judge would give KL = log 2 (uniform over 5 of 10 balanced classes). The classifier leaks a
    # few percent of each class into look-alikes (pullover -> coat, shirt), which lowers the KL a little.
    assert 0.45 < cov["kl"] < math.log(2) + 0.05
    assert r["metrics"]["class_kl"]["value"] == cov["kl"]
    # exactly what the classifier says about the very same images
    imgs = to_uint8(torch.cat([G(z) for z in GeneratedImages(G, 1000, 0).z.split(250)]))
    with torch.no_grad():
        p_gen = torch.bincount(net(classifier_input(imgs))[1].argmax(1), minlength=10).double() / 1000
    assert cov["histogram"] == pytest.approx(p_gen.tolist(), abs=1e-4)
    assert cov["kl"] == pytest.approx(
        class_coverage(p_gen, torch.tensor(cov["data_histogram"]))["kl"], abs=2e-3
    )
    # and a generator of the whole test set covers all ten with KL ~ 0
    full = evaluate(fake_loaded(ReplayG(fmnist_test.images)), metrics="coverage", n=1000)["metrics"][
        "coverage"
    ]["value"]
    assert full["classes"] == 10 and full["kl"] < 0.02


# --- the shipped classifier and the streaming --------------------------------------------------------------


def test_shipped_classifier_is_small_accurate_and_its_accuracy_reproduces(fmnist_test, net):
    meta = json.loads((classifier_dir() / "config.json").read_text())
    assert meta["test_accuracy"] >= 0.90
    assert meta["command"].startswith("python scripts/train_classifier.py --out weights/fmnist-classifier")
    assert (classifier_dir() / "model.safetensors").stat().st_size < 2 * 2**20
    assert f"{meta['test_accuracy']:.2%}" in (classifier_dir() / "README.md").read_text()
    with torch.no_grad():
        pred = torch.cat([net(classifier_input(x))[1].argmax(1) for x in fmnist_test.images.split(2000)])
    assert (pred == fmnist_test.labels).double().mean().item() == pytest.approx(
        meta["test_accuracy"], abs=2e-3
    )


def test_generated_images_stream_the_samples_ganhub_sample_shows():
    G = load_generator("dcgan", device="cpu").G
    ds = GeneratedImages(G, 300, seed=3, block=128)
    streamed = torch.stack([ds[i] for i in range(len(ds))])
    expected = to_uint8(sample(G, 300, seed=3))
    assert streamed.dtype == torch.uint8 and (streamed.int() - expected.int()).abs().max() <= 1


# --- Inception: never a silent fallback, and fast offline ---------------------------------------------------


def test_offline_inception_fails_fast_with_instructions(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv("GANHUB_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("GANHUB_OFFLINE", raising=False)
    monkeypatch.setattr(extractors, "_online", lambda *a, **k: False)
    t = time.time()
    with pytest.raises(
        ExtractorError, match="not available offline.*--inception-weights PATH.*GANHUB_INCEPTION_WEIGHTS"
    ):
        inception_weights(None)
    assert main(["eval", "dcgan", "--extractor", "inception", "--n", "100"]) == 2
    assert "Inception-v3 weights are not available offline" in capsys.readouterr().err
    assert time.time() - t < 10
    with pytest.raises(ExtractorError, match="not found at"):
        inception_weights(tmp_path / "missing.pth")
    (tmp_path / "evil.pth").write_bytes(b"not a state dict")
    with pytest.raises(ExtractorError, match="not a plain PyTorch state dict"):
        inception_weights(tmp_path / "evil.pth")
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    monkeypatch.setenv("GANHUB_INCEPTION_WEIGHTS", str(tmp_path / "other.pth"))
    with pytest.raises(ExtractorError, match="does not hold torch-fidelity's Inception-v3"):
        inception_weights(None)


def test_user_given_inception_weights_are_used_and_described(monkeypatch, tmp_path):
    """A user-supplied file goes to torch-fidelity as is; the protocol says whether it is the reference."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    load = tfi.FeatureExtractorInceptionV3.load_state_dict  # build an untrained net without downloading
    monkeypatch.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: None)
    monkeypatch.setattr(
        tfi.FeatureExtractorInceptionV3,
        "load_state_dict",
        lambda self, sd, *a, **k: sd and load(self, sd, *a, **k),
    )
    torch.save(
        tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict(), tmp_path / "mine.pth"
    )
    monkeypatch.setenv("GANHUB_INCEPTION_WEIGHTS", str(tmp_path / "mine.pth"))
    ext = extractors.get_extractor("inception")
    assert ext.fidelity_name == "inception-v3-compat" and ext.rgb and ext.input_size == 299
    assert ext.kwargs == {"feature_extractor_weights_path": str(tmp_path / "mine.pth")}
    assert "NOT the reference weights" in ext.description and "299 px" in ext.protocol(32)["image_size"]


def test_the_network_probe_is_bounded_even_when_dns_hangs(monkeypatch):
    monkeypatch.delenv("GANHUB_OFFLINE", raising=False)
    for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(k, raising=False)

    def hanging_lookup(*args, **kwargs):  # what a stuck resolver does: block, then give up
        time.sleep(30)
        raise socket.gaierror("Temporary failure in name resolution")

    monkeypatch.setattr(socket, "create_connection", hanging_lookup)
    t = time.time()
    assert extractors._online(timeout=0.3) is False
    assert time.time() - t < 2
    monkeypatch.setenv("GANHUB_OFFLINE", "1")
    assert extractors._online() is False


# --- evaluate() and `ganhub eval` ---------------------------------------------------------------------------


def test_evaluate_reports_every_metric_with_its_protocol_and_caches_real_statistics(tmp_path):
    r = evaluate("dcgan", metrics=("fid", "kid", "is", "pr", "coverage"), n=300)
    m = r["metrics"]
    assert set(m) == {"fid", "kid", "is", "precision", "recall", "coverage", "class_kl"}
    for name, v in m.items():
        p = v["protocol"]
        assert (
            p["n_generated"] == 300
            and p["seed"] == 0
            and p["truncation"] == 1.0
            and "fmnist" in p["extractor"]
        )
        assert (
            p["real"] == "fashion-mnist, test split"
            and "32 px" in p["image_size"]
            and len(p["extractor_sha256"]) == 12
        )
        assert p["n_real"] == (10_000 if name in ("coverage", "class_kl") else 300)
        assert (
            v["command"]
            == r["command"]
            == "ganhub eval dcgan --metrics fid,kid,is,pr,coverage --n 300 --extractor fmnist --seed 0"
        )
    assert m["kid"]["protocol"]["kid_subset_size"] == 300 and "std" in m["kid"]
    assert m["fid"]["value"] > 0 and 0 <= m["precision"]["value"] <= 1 and 1 <= m["is"]["value"] <= 10
    assert m["coverage"]["value"]["classes"] >= 8
    names = [p.name for p in (cache_dir() / "fidelity").iterdir()]
    assert any(
        n.startswith("ganhub-v1-fashion-mnist-test-32px-1ch-n300-fmnist-") and "features" in n for n in names
    ), names
    again = evaluate("dcgan", metrics="fid,pr", n=300)["metrics"]  # real side from the cache now
    assert again["fid"]["value"] == pytest.approx(m["fid"]["value"], rel=1e-6)
    assert again["precision"]["value"] == m["precision"]["value"]
    other_seed = evaluate("dcgan", metrics="fid", n=300, seed=1)["metrics"]["fid"]
    assert other_seed["protocol"]["seed"] == 1 and other_seed["value"] != m["fid"]["value"]


def test_evaluate_leaves_the_global_rng_as_it_found_it(monkeypatch, tmp_path):
    """Building G and torch-fidelity's DataLoaders draw from torch's global RNG, more on a cache miss than on a
    hit: a training evaluated in its own process (benchmarks/train_curve.py) must not see those draws."""
    monkeypatch.setenv("GANHUB_CACHE", str(tmp_path / "cache"))  # the first call misses, the second hits
    for call in ("miss", "hit"):
        torch.manual_seed(0)
        before = torch.get_rng_state()
        evaluate("vanilla", metrics="fid,coverage", n=300)
        assert torch.equal(torch.get_rng_state(), before), call
    assert any((tmp_path / "cache" / "fidelity").iterdir())


def test_cli_table_json_write_and_errors(tmp_path, capsys):
    shipped = (classifier_dir().parent / "dcgan" / "config.json").read_bytes()
    folder = tmp_path / "run"
    shutil.copytree(classifier_dir().parent / "dcgan", folder)
    assert main(["eval", str(folder), "dcgan", "--metrics", "fid,coverage", "--n", "200"]) == 0
    table = capsys.readouterr().out
    assert "FID" in table and "classes" in table and "protocol:" in table and "n_generated=200" in table
    assert table.count(str(folder)) == 1 and "\ndcgan " in table
    assert main(["eval", str(folder), "--metrics", "fid,coverage", "--n", "200", "--write"]) == 0
    capsys.readouterr()
    meta = json.loads((folder / "config.json").read_text())
    assert meta["metrics"]["fid"]["protocol"]["n_generated"] == 200
    assert meta["metrics"]["coverage"]["value"]["classes"] >= 8
    assert (
        classifier_dir().parent / "dcgan" / "config.json"
    ).read_bytes() == shipped  # only the copy changed
    assert main(["eval", "dcgan", "--metrics", "kid", "--n", "100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["kid"]["protocol"]["n_generated"] == 100
    assert main(["eval", "dcgan", "--metrics", "fid,bogus", "--n", "200"]) == 2
    assert "unknown metric(s) bogus" in capsys.readouterr().err
    assert main(["eval", "dcgan", "--n", "10"]) == 2
    assert "at least 50" in capsys.readouterr().err


def test_write_refuses_sources_that_are_not_local_folders(capsys):
    assert main(["eval", "someone/repo", "--metrics", "fid", "--n", "100", "--write"]) == 2
    assert "--write records results in a local run folder" in capsys.readouterr().err


# --- conditional accuracy -------------------------------------------------------------------------------


class ReplayCondG(nn.Module):
    """A conditional "generator": G(z, c) replays a real test image of class (c + shift) % 10, chosen by z."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, shift: int = 0, z_dim: int = 8):
        super().__init__()
        self.pools = [images[labels == (c + shift) % 10] for c in range(10)]
        self.register_buffer("anchor", torch.zeros(()))
        self.z_dim, self.num_classes = z_dim, 10

    def forward(self, z, c):
        idx = (z[:, 0].abs() * 1e6).long()
        return torch.stack([self.pools[int(k)][int(i) % len(self.pools[int(k)])] for k, i in zip(c, idx)]).float() / 127.5 - 1


def cond_loaded(G: nn.Module) -> Loaded:
    return Loaded(
        G,
        None,
        BaseConfig(z_dim=G.z_dim, num_classes=10),
        {"variant": "replay-cond", "recipe": {"dataset": "fashion-mnist"}},
        Path("replay-cond"),
    )


def test_conditional_accuracy_of_real_images_is_the_classifiers_accuracy(fmnist_test, net):
    G = ReplayCondG(fmnist_test.images, fmnist_test.labels)
    r = conditional_accuracy(G, 100, seed=0, net=net)
    assert len(r["per_class"]) == 10 and all(sum(row) == 100 for row in r["confusion"])
    assert r["accuracy"] == pytest.approx(sum(r["per_class"]) / 10, abs=1e-3)
    # the same images classified directly: the metric is exactly "share of G(z, k) predicted k"
    z = latents(100, 8, 0)
    for k in (0, 6):
        imgs = to_uint8(G(z, torch.full((100,), k)))
        with torch.no_grad():
            direct = (net(classifier_input(imgs))[1].argmax(1) == k).double().mean().item()
        assert r["per_class"][k] == pytest.approx(direct, abs=1e-4)
    assert r["accuracy"] > 0.85  # about the classifier's test accuracy (shirts are its weak class)
    assert min(r["per_class"]) == r["per_class"][6]  # ... and "shirt" is the hardest
    # a generator that draws class k + 1 when asked for k scores near zero, row by row
    wrong = conditional_accuracy(ReplayCondG(fmnist_test.images, fmnist_test.labels, shift=1), 100, net=net)
    assert wrong["accuracy"] < 0.1 and wrong["confusion"][3][4] > 80  # asked "dress", got "coat"


def test_evaluate_adds_accuracy_for_conditional_generators_only(fmnist_test, capsys):
    G = ReplayCondG(fmnist_test.images, fmnist_test.labels)
    r = evaluate(cond_loaded(G), n=200, metrics=None)
    m = r["metrics"]
    assert {"fid", "coverage", "accuracy"} <= set(m) and "skipped" not in r
    acc = m["accuracy"]
    assert acc["value"] > 0.85 and list(acc["per_class"])[9] == "Ankle boot"
    assert acc["protocol"]["n_per_class"] == 20 and acc["protocol"]["n_generated"] == 200
    assert "--metrics fid,kid,pr,coverage,accuracy" in r["command"]
    assert m["coverage"]["value"]["classes"] == 10  # FID/coverage samples draw random classes
    # unconditional: not in the default set, skipped with a reason when asked, an error when alone
    plain = evaluate("dcgan", n=100, metrics=None)
    assert "accuracy" not in plain["metrics"] and "skipped" not in plain
    asked = evaluate("dcgan", n=100, metrics="coverage,accuracy")
    assert "unconditional" in asked["skipped"]["accuracy"]
    with pytest.raises(GanhubError, match="needs a conditional generator"):
        evaluate("dcgan", n=100, metrics="accuracy")
    table = format_table([r])
    assert "cond. acc" in table and "cond. acc per class (replay-cond): T-shirt/top" in table


def test_a_damaged_class_histogram_cache_is_recomputed(fmnist_test, net, monkeypatch, tmp_path):
    from ganhub import metrics

    monkeypatch.setenv("GANHUB_CACHE", str(tmp_path))
    first = metrics._data_class_histogram(fmnist_test, "k", net, True)
    path = tmp_path / "fidelity" / "k-class-histogram.json"
    assert json.loads(path.read_text())["counts"] == first.long().tolist()
    for junk in ('{"counts": [1, 2', '{"counts": "x"}', "[]", '{"counts": [1, 2, 3]}'):
        path.write_text(junk)
        assert torch.equal(metrics._data_class_histogram(fmnist_test, "k", net, True), first)
    assert json.loads(path.read_text())["counts"] == first.long().tolist()  # and repaired
