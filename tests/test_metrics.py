import json
import math
import shutil
import time

import numpy as np
import pytest
import scipy.linalg
import torch
import torch_fidelity
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from ganhub import classifier
from ganhub.cli import main
from ganhub.data import load_dataset, toy_points
from ganhub.metrics import (
    MetricsError,
    _RealImages,
    class_histogram,
    coverage_from_histograms,
    evaluate,
    inception_weights,
    toy_metrics,
)


def test_fid_of_two_gaussians_matches_the_closed_form():
    """FID(N(m1, S1), N(m2, S2)) = |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)); diagonal S: per-dim sqrt."""
    rng = np.random.default_rng(0)
    d = 8
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    closed = float(((m1 - m2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum())
    got = fid_statistics_to_metric({"mu": m1, "sigma": np.diag(s1)}, {"mu": m2, "sigma": np.diag(s2)}, False)
    assert got["frechet_inception_distance"] == pytest.approx(closed, rel=1e-9)
    # and from samples: converges to the closed form
    x = rng.normal(m1, np.sqrt(s1), size=(200_000, d))
    y = rng.normal(m2, np.sqrt(s2), size=(200_000, d))
    est = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(x)), fid_features_to_statistics(torch.from_numpy(y)), False)
    assert est["frechet_inception_distance"] == pytest.approx(closed, rel=0.02)


def test_torch_fidelity_agrees_with_scipy_on_identical_features():
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.normal(size=(3000, 16)))
    b = torch.from_numpy(rng.normal(size=(3000, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3)
    sa, sb = fid_features_to_statistics(a), fid_features_to_statistics(b)
    covmean = scipy.linalg.sqrtm(sa["sigma"] @ sb["sigma"]).real
    ref = float(((sa["mu"] - sb["mu"]) ** 2).sum() + np.trace(sa["sigma"] + sb["sigma"] - 2 * covmean))
    assert fid_statistics_to_metric(sa, sb, False)["frechet_inception_distance"] == pytest.approx(ref, rel=1e-6)


def fidelity(input1, input2, **kw):
    return torch_fidelity.calculate_metrics(input1=input1, input2=input2, feature_extractor="ganhub-fmnist", cuda=False,
                                            verbose=False, cache=False, save_cpu_ram=True, batch_size=500, **kw)


def test_real_vs_real_fid_is_near_zero_and_noise_is_far():
    test = load_dataset("fashion-mnist", split="test")
    a, b = _RealImages(test.images[:2000], False), _RealImages(test.images[2000:4000], False)
    real = fidelity(a, b, fid=True)["frechet_inception_distance"]
    noise = _RealImages(torch.randint(0, 256, (2000, 1, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8), False)
    far = fidelity(noise, b, fid=True)["frechet_inception_distance"]
    assert real < 0.02 * far, (real, far)


def test_precision_recall_on_toy_modes_follow_the_paper():
    """Kynkaanniemi et al. 2019: a generator covering half the modes has recall ~0.5 and precision ~1."""
    ring = toy_points("ring8", n=4000, seed=0)
    real = ring.images
    half = toy_points("ring8", n=8000, seed=1)
    gen = half.images[half.labels < 4][:4000]  # samples from modes 0-3 only
    out = prc_features_to_metric(gen, real, prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    assert out["precision"] > 0.95 and 0.4 < out["recall"] < 0.6, out
    tm = toy_metrics(gen, ring.modes, ring.mode_std)
    assert tm["modes_covered"] == 4 and tm["high_quality"] > 0.99


def test_class_coverage_counts_classes_and_kl():
    test = load_dataset("fashion-mnist", split="test")
    net = classifier.load()
    keep = torch.isin(test.labels, torch.tensor([1, 2, 3, 7, 8]))  # trouser, pullover, dress, sneaker, bag
    p_gen = class_histogram(test.batch(torch.nonzero(keep).squeeze(1)[:2000]), net)
    p_data = class_histogram(test.batch(torch.arange(4000)), net)
    cov = coverage_from_histograms(p_gen, p_data)
    assert cov["classes"] == 5
    assert cov["kl"] == pytest.approx(math.log(2), abs=0.15)  # uniform over 5 of 10 classes: KL = log 2
    full = coverage_from_histograms(p_data, p_data)
    assert full["classes"] == 10 and full["kl"] == pytest.approx(0.0, abs=1e-6)


def test_shipped_classifier_accuracy_is_recorded_and_reproducible():
    cfg = json.loads((classifier.path() / "config.json").read_text())
    assert cfg["test_accuracy"] >= 0.90 and "scripts/train_classifier.py" in cfg["command"]
    test = load_dataset("fashion-mnist", split="test")
    net = classifier.load()
    with torch.no_grad():
        pred = torch.cat([net(x)[1].argmax(1) for x in test.batch(torch.arange(10000)).split(1000)])
    assert (pred == test.labels).float().mean().item() == pytest.approx(cfg["test_accuracy"], abs=1e-3)


def test_offline_inception_fails_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv("GANHUB_INCEPTION_WEIGHTS", raising=False)
    t = time.time()
    with pytest.raises(MetricsError, match="not available offline.*--inception-weights"):
        inception_weights(None)
    assert time.time() - t < 10
    with pytest.raises(MetricsError, match="not found at"):
        inception_weights(str(tmp_path / "missing.pth"))
    (tmp_path / "evil.pth").write_bytes(b"not a state dict")
    with pytest.raises(MetricsError, match="not a plain PyTorch state dict"):
        inception_weights(str(tmp_path / "evil.pth"))


def test_evaluate_bundled_weights_with_protocol_and_cli(tmp_path, capsys):
    r = evaluate("dcgan", metrics=("fid", "kid", "is", "pr", "coverage"), n=300)
    m = r["metrics"]
    assert {"fid", "kid", "is", "precision", "recall", "coverage"} <= set(m)
    for v in m.values():
        p = v["protocol"]
        assert p["n_generated"] == 300 and p["n_real"] == 300 and p["seed"] == 0 and "fmnist" in p["extractor"]
        assert "test split" in p["real"] and "32 px" in p["image_size"] and v["command"].startswith("ganhub eval dcgan")
    assert m["fid"]["value"] > 0 and 0 <= m["precision"]["value"] <= 1 and m["coverage"]["value"]["classes"] >= 8
    assert evaluate("dcgan", metrics=("fid",), n=300)["metrics"]["fid"]["value"] == pytest.approx(m["fid"]["value"])
    folder = tmp_path / "copy"
    shutil.copytree(classifier.path().parent / "dcgan", folder)
    assert main(["eval", str(folder), "dcgan", "--metrics", "fid,coverage", "--n", "200", "--write"]) == 0
    table = capsys.readouterr().out
    assert "fid" in table and "protocol:" in table and "classes" in table
    assert json.loads((folder / "config.json").read_text())["metrics"]["fid"]["protocol"]["n_generated"] == 200
    assert main(["eval", "dcgan", "--metrics", "fid,bogus", "--n", "200"]) == 2
    assert "unknown metric" in capsys.readouterr().err
