"""Evaluation: FID, KID, IS and precision/recall computed by torch-fidelity; class coverage; 2-D toy metrics.

Protocol (every reported value carries it; see `_protocol`):
  - Feature extractor: "fmnist" (default; ganhub's own classifier, offline) or "inception" (papers'
    standard), see ganhub.extractors. Images reach either as uint8, like PNGs would, never as PNG files.
  - Real data: the split (default "test", the 10k Fashion-MNIST test images) of the dataset the model was
    trained on, loaded at the model's resolution exactly as training saw it. n_real = min(n, split size):
    FID's bias depends on both sample counts, and precision/recall's k-NN radii assume equal counts
    (Kynkäänniemi et al. 2019). Fewer than the whole split: a fixed subset (permutation with seed 0,
    whatever the evaluation seed, so the cached real statistics serve every seed).
  - Generated data: n samples of the EMA generator from the latents ganhub.sample.latents(n, z, seed)
    (for generators without internal noise: the very images `ganhub sample --seed` shows), streamed in
    blocks through torch-fidelity. The default n is 10,000 (10k generated vs the 10k test images); fewer
    samples inflate FID, so compare numbers only at equal n.
  - KID: polynomial kernel (degree 3), 100 subsets of min(1000, n_real, n) samples. IS: 10 splits.
    Precision/recall: k = 3 nearest neighbours (the paper's default).
  - Class coverage (Fashion-MNIST only; `class_coverage`): the fmnist classifier's predicted-class
    histogram of the generated samples against its histogram on the whole real split. Using predictions
    for both sides (rather than the true labels for the data) cancels the classifier's own confusions: a
    perfect generator scores KL ~ 0.
  - Conditional accuracy (conditional Fashion-MNIST generators only; `conditional_accuracy`): for each
    class k, n // 10 samples of G(z, k) from the latents of the evaluation seed (the same z for every k,
    so only the asked class changes), classified by the fmnist classifier; accuracy = share predicted k,
    overall and per class. "Does asking for class k give class k?" The classifier's own test accuracy
    (weights/fmnist-classifier) bounds what real images would score. Part of the default metrics for
    conditional generators; unconditional ones skip it.
  - 2-D toys (`toy_metrics`): modes covered and the share of high-quality samples, as in VEEGAN/PacGAN.

Real-data features and FID statistics are cached by torch-fidelity under $GANHUB_CACHE/fidelity (default
~/.cache/ganhub/fidelity), one entry per (dataset, split, resolution, channels, n_real, extractor weights).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch_fidelity
from torch import nn
from torch.utils.data import Dataset
from torch_fidelity.metric_prc import prc_features_to_metric

from ganhub.data import FMNIST_CLASSES as FMNIST_CLASS_NAMES
from ganhub.data import ImageDataset, cache_dir, load_dataset, toy_points
from ganhub.device import pick_device
from ganhub.errors import GanhubError
from ganhub.extractors import Extractor, classifier_input, get_extractor, load_classifier
from ganhub.run import RunFolder, atomic_write_json
from ganhub.sample import device_of, generate, iter_samples, latents, rng_kept, to_uint8
from ganhub.source import Loaded, bundled, load_generator, weights_dir
from ganhub.variant import capabilities

ALL_METRICS = ("fid", "kid", "is", "pr", "coverage", "accuracy")
DEFAULT_METRICS = ("fid", "kid", "pr", "coverage")  # + "accuracy" for conditional generators
FMNIST_CLASSES = 10
DEFAULT_N = 10_000
MIN_N = 50  # below this, covariance and k-NN estimates are noise
BATCH = 250  # generated images per block = torch-fidelity batch

KID_SUBSETS, KID_SUBSET_SIZE, IS_SPLITS, PR_K = 100, 1000, 10, 3
PR_BATCH = 2000  # rows of the k-NN distance blocks: ~0.3 GB peak at n = 10k instead of ~2.8 GB
# A class counts as generated when its share of the samples is at least a quarter of its share in the data
# (2.5% for balanced Fashion-MNIST): above the classifier's typical confusion leakage into a wrong class
# for most class pairs (the worst pair is recorded in weights/fmnist-classifier/config.json).
COVERAGE_MIN_RATIO = 0.25
# Toys: "high quality" = within 3 std of the nearest mode (Srivastava et al. 2017, VEEGAN); a mode is
# covered when it holds at least 20 high-quality samples per 2,500 (Lin et al. 2018, PacGAN), i.e. 0.8%.
TOY_SIGMAS, TOY_MIN_SHARE = 3.0, 20 / 2500
CACHE_VERSION = 1  # bump when the real-data pipeline changes, to orphan old cache entries
BUILTIN_DATASETS = ("fashion-mnist", "mnist", "cifar10")


class MetricsError(GanhubError):
    pass


@dataclass(frozen=True)
class Settings:
    """One evaluation's choices: everything a number depends on besides the generator and the data."""

    n: int = DEFAULT_N
    seed: int = 0
    extractor: str = "fmnist"
    split: str = "test"
    truncation: float = 1.0
    batch_size: int = BATCH
    cache: bool = True
    verbose: bool = False


# ---------------------------------------------------------------------------------------------------------
# Inputs for torch-fidelity


class RealImages(Dataset):
    """uint8 (N, C, H, W) -> items (C, H, W); grey repeated to RGB for extractors that need it."""

    def __init__(self, images: torch.Tensor, rgb: bool = False):
        self.images, self.rgb = images, rgb

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.images[i]
        return x.expand(3, -1, -1) if self.rgb and x.shape[0] == 1 else x


class GeneratedImages(Dataset):
    """n samples of G as uint8 items (C, H, W), generated lazily one block at a time and never stored.

    torch-fidelity reads a Dataset through a DataLoader; with `save_cpu_ram=True` it uses no worker
    processes, so items are requested in order and each block is generated exactly once. `observers` see
    every block as it is made (`observer(block_index, uint8 images)`): class coverage counts classes on
    the very images FID is computed from. In-generator noise (e.g. StyleGAN's) is seeded per block from
    (seed, block), so results do not depend on the order blocks are requested in.
    """

    def __init__(
        self,
        G: nn.Module,
        n: int,
        seed: int,
        *,
        truncation: float = 1.0,
        block: int = BATCH,
        rgb: bool = False,
        observers: Sequence[Callable[[int, torch.Tensor], None]] = (),
    ):
        self.G, self.n, self.seed, self.truncation, self.block, self.rgb = G, n, seed, truncation, block, rgb
        self.z = latents(n, int(G.z_dim), seed)
        self.observers = list(observers)
        self._cached: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return self.n

    def block_images(self, b: int) -> torch.Tensor:
        if self._cached is None or self._cached[0] != b:
            noise_seed = int(np.random.SeedSequence([self.seed, b]).generate_state(1)[0])
            x = generate(
                self.G,
                self.z[b * self.block : (b + 1) * self.block],
                truncation=self.truncation,
                seed=noise_seed,
                batch_size=self.block,
            )
            if x.dim() != 4:
                raise MetricsError(f"the generator returned {tuple(x.shape)} instead of images (N, C, H, W)")
            u = to_uint8(x)
            for observe in self.observers:
                observe(b, u)
            self._cached = (b, u)
        return self._cached[1]

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.block_images(i // self.block)[i % self.block]
        return x.expand(3, -1, -1) if self.rgb and x.shape[0] == 1 else x


# ---------------------------------------------------------------------------------------------------------
# Class coverage


class ClassTally:
    """Observer of GeneratedImages: predicted-class counts per block (idempotent if a block is redone)."""

    def __init__(self, net: nn.Module):
        self.net, self.counts = net, {}

    @torch.no_grad()
    def __call__(self, b: int, images: torch.Tensor) -> None:
        self.counts[b] = predicted_counts(images, self.net)

    def histogram(self) -> torch.Tensor:
        total = torch.stack(list(self.counts.values())).sum(0)
        return total / total.sum()


@torch.no_grad()
def predicted_counts(images: torch.Tensor, net: nn.Module, batch: int = 250) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> counts (10,) of the fmnist classifier's predicted classes."""
    device = next(net.parameters()).device
    counts = torch.zeros(10, dtype=torch.long)
    for x in images.split(batch):
        pred = net(classifier_input(x.to(device)))[1].argmax(1).cpu()
        counts += torch.bincount(pred, minlength=10)
    return counts


def class_coverage(
    p_gen: torch.Tensor, p_data: torch.Tensor, min_ratio: float = COVERAGE_MIN_RATIO
) -> dict[str, Any]:
    """Classes generated (share >= min_ratio x the class's data share) and KL(p_gen || p_data) in nats.

    KL(gen || data) is the direction that grows when the generator over-produces a few classes (mode
    collapse) and is finite whenever the data has every class; 0 log 0 = 0 for classes never generated.
    Uniform samples of k of 10 balanced classes give KL = log(10 / k).
    """
    p_gen, p_data = p_gen.double() / p_gen.sum(), p_data.double() / p_data.sum()
    nz = p_gen > 0
    kl = float((p_gen[nz] * (p_gen[nz] / p_data[nz].clamp_min(1e-12)).log()).sum())
    covered = p_gen >= min_ratio * p_data
    return {
        "classes": int(covered.sum()),
        "of": len(p_gen),
        "kl": kl,
        "histogram": [round(float(v), 4) for v in p_gen],
        "data_histogram": [round(float(v), 4) for v in p_data],
    }


def _data_class_histogram(real: ImageDataset, key: str, net: nn.Module, use_cache: bool) -> torch.Tensor:
    path = cache_dir() / "fidelity" / f"{key}-class-histogram.json"
    if use_cache and path.is_file():
        try:
            counts = torch.tensor(json.loads(path.read_text())["counts"], dtype=torch.float64)
            if counts.shape == (FMNIST_CLASSES,) and (counts >= 0).all() and counts.sum() > 0:
                return counts
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            pass  # a cut or foreign cache file: recompute and overwrite it
    counts = predicted_counts(real.images, net)
    if use_cache:
        try:
            atomic_write_json(path, {"counts": counts.tolist()})
        except OSError:
            pass  # a read-only or full cache only costs the recomputation next time
    return counts.double()


# ---------------------------------------------------------------------------------------------------------
# Conditional accuracy


def num_classes_of(G: nn.Module) -> int:
    return int(getattr(G, "num_classes", 0) or 0)


@torch.no_grad()
def conditional_accuracy(
    G: nn.Module, n_per_class: int, seed: int = 0, *, net: nn.Module | None = None, block: int = BATCH
) -> dict[str, Any]:
    """For each class k: n_per_class samples of G(z, k), classified; the share predicted k.

    Returns {"accuracy": overall share, "per_class": [share for k in range(K)], "confusion": (K, 10) counts
    of predicted classes per asked class}. Needs a conditional generator whose classes are Fashion-MNIST's.
    """
    k_classes = num_classes_of(G)
    if k_classes != FMNIST_CLASSES:
        raise MetricsError(
            f"conditional accuracy needs a generator of the {FMNIST_CLASSES} Fashion-MNIST classes, this one has "
            f"{k_classes}; drop accuracy from --metrics"
        )
    net = net if net is not None else load_classifier("cpu")
    confusion = torch.zeros(k_classes, FMNIST_CLASSES, dtype=torch.long)
    for k in range(k_classes):  # the latents of `seed` for every k: only the asked class changes
        for images in iter_samples(G, n_per_class, seed, labels=k, batch_size=block):
            confusion[k] += predicted_counts(to_uint8(images), net, batch=block)
    per_class = (confusion.diagonal().double() / confusion.sum(1).double()).tolist()
    return {
        "accuracy": float(confusion.diagonal().sum()) / float(confusion.sum()),
        "per_class": [round(a, 4) for a in per_class],
        "confusion": confusion.tolist(),
    }


def _accuracy_skip_reason(G: nn.Module, dataset: str) -> str | None:
    k = num_classes_of(G)
    if k == 0:
        return "conditional accuracy needs a conditional generator; this one is unconditional"
    if dataset != "fashion-mnist" or k != FMNIST_CLASSES:
        return (
            f"conditional accuracy judges with the Fashion-MNIST classifier; this generator learned {dataset!r} "
            f"with {k} classes"
        )
    return None


# ---------------------------------------------------------------------------------------------------------
# 2-D toys


def toy_metrics(
    points: torch.Tensor,
    modes: torch.Tensor,
    std: float,
    *,
    sigmas: float = TOY_SIGMAS,
    min_share: float = TOY_MIN_SHARE,
) -> dict[str, Any]:
    """Modes covered and share of high-quality samples for a 2-D Gaussian mixture (points (N, 2)).

    A sample is high quality when within `sigmas` std of its nearest mode; a mode is covered when at least
    `min_share` of all samples are high-quality samples of it. Note that even the data itself scores
    1 - exp(-sigmas^2 / 2) = 98.9% high quality at 3 std (the radius of a 2-D isotropic Gaussian).
    """
    dist, nearest = torch.cdist(points.float(), modes.float()).min(1)
    hq = dist <= sigmas * std
    per_mode = torch.bincount(nearest[hq], minlength=len(modes))
    covered = per_mode >= max(1.0, min_share * len(points))
    return {
        "modes_covered": int(covered.sum()),
        "modes": len(modes),
        "high_quality": float(hq.float().mean()),
        "per_mode": per_mode.tolist(),
    }


def _evaluate_toy(G: nn.Module, dataset: str, names: list[str], run: Settings) -> dict[str, Any]:
    if dataset not in ("ring8", "grid25"):
        raise MetricsError(
            f"this generator makes 2-D points but was trained on {dataset!r}; toy metrics know ring8 and grid25"
        )
    gen = generate(G, latents(run.n, int(G.z_dim), run.seed), truncation=run.truncation, seed=run.seed)
    real = toy_points(dataset, n=run.n, seed=0)
    proto = {
        "dataset": dataset,
        "n_generated": run.n,
        "seed": run.seed,
        "truncation": run.truncation,
        "mode_std": real.mode_std,
        "rule": f"high quality: within {TOY_SIGMAS:g} std of the nearest mode; mode covered: >= {TOY_MIN_SHARE:.1%} of "
        "samples are high-quality samples of it (VEEGAN/PacGAN)",
    }
    tm = toy_metrics(gen, real.modes, real.mode_std)
    out = {
        "modes_covered": {
            "value": tm["modes_covered"],
            "of": tm["modes"],
            "per_mode": tm["per_mode"],
            "protocol": proto,
        },
        "high_quality": {"value": tm["high_quality"], "protocol": proto},
    }
    if "pr" in names:  # in the raw 2-D space, where the paper's toy experiments live
        pr = prc_features_to_metric(
            gen, real.images, prc_neighborhood=PR_K, prc_batch_size=PR_BATCH, save_cpu_ram=True, verbose=False
        )
        pr_proto = {
            **proto,
            "real": f"{dataset}, {run.n} points (seed 0)",
            "n_real": run.n,
            "features": "raw 2-D points",
            "k": PR_K,
            "computed_by": f"torch-fidelity {torch_fidelity.__version__}",
        }
        out["precision"] = {"value": pr["precision"], "protocol": pr_proto}
        out["recall"] = {"value": pr["recall"], "protocol": pr_proto}
    return out


# ---------------------------------------------------------------------------------------------------------
# Evaluation


def _real_key(dataset: str, split: str, res: int, ch: int, n_real: int, ext: Extractor) -> str:
    """A deterministic, file-name-safe cache name; a path dataset is named by its resolved path."""
    name = dataset
    if dataset not in BUILTIN_DATASETS and Path(dataset).expanduser().exists():
        resolved = str(Path(dataset).expanduser().resolve())
        name = Path(resolved).name + "-" + hashlib.sha256(resolved.encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return f"ganhub-v{CACHE_VERSION}-{name}-{split}-{res}px-{ch}ch-n{n_real}-{ext.name}-{ext.digest}"


def _command(source: str, metrics: list[str], run: Settings) -> str:
    cmd = f"ganhub eval {source} --metrics {','.join(metrics)} --n {run.n} --extractor {run.extractor} --seed {run.seed}"
    if run.split != "test":
        cmd += f" --split {run.split}"
    if run.truncation != 1.0:
        cmd += f" --truncation {run.truncation:g}"
    return cmd


def _parse_metrics(metrics: str | Sequence[str]) -> list[str]:
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = [m.strip().lower() for m in names if m.strip()]
    bad = [m for m in names if m not in ALL_METRICS]
    if bad or not names:
        raise MetricsError(
            f"unknown metric(s) {', '.join(bad) or '(none given)'}; choose from {','.join(ALL_METRICS)}"
        )
    return list(dict.fromkeys(names))


def evaluate(
    source: str | Path | Loaded,
    *,
    metrics: str | Sequence[str] | None = None,
    n: int = DEFAULT_N,
    extractor: str = "fmnist",
    seed: int = 0,
    batch_size: int = BATCH,
    device: str | torch.device | None = None,
    real_split: str = "test",
    truncation: float = 1.0,
    inception_weights_path: str | Path | None = None,
    cache: bool = True,
    verbose: bool = False,
) -> dict[str, Any]:
    """Evaluate a generator (run folder, bundled weights name, Hub repo id, or a loaded one).

    Returns {"source", "variant", "step", "metrics": {name: {"value", "protocol", "command", ...}},
    "command", "seconds"} (+ "skipped": {metric: why}). Metric names: fid, kid, is, precision, recall,
    coverage (details), class_kl and accuracy (conditional) for images; modes_covered, high_quality
    (+ precision, recall) for toys. metrics=None: DEFAULT_METRICS, + accuracy for a conditional
    Fashion-MNIST generator.
    """
    t0 = time.time()
    names = _parse_metrics(DEFAULT_METRICS if metrics is None else metrics)
    if extractor not in ("fmnist", "inception"):
        raise MetricsError(f"unknown extractor {extractor!r}; use fmnist or inception")
    if n < MIN_N:
        raise MetricsError(f"--n must be at least {MIN_N} samples for meaningful statistics, got {n}")
    if batch_size < 1:
        raise MetricsError(f"batch size must be positive, got {batch_size}")
    run = Settings(n, seed, extractor, real_split, truncation, batch_size, cache, verbose)
    # Building G draws its initial weights, and torch's DataLoader (torch-fidelity's) draws a base seed, from
    # torch's global RNG, a different number of times on a cache miss: a training in the same process (as in
    # benchmarks/train_curve.py) would then follow a stream its recorded command never sees.
    dev = device_of(source.G) if isinstance(source, Loaded) else pick_device(device)
    with rng_kept(dev):
        return _evaluate(source, names, run, metrics, device, inception_weights_path, t0)


def _evaluate(source: str | Path | Loaded, names: list[str], run: Settings, metrics, device,
              inception_weights_path: str | Path | None, t0: float) -> dict[str, Any]:
    loaded = source if isinstance(source, Loaded) else load_generator(source, device=device)
    src = str(loaded.path) if isinstance(source, Loaded) else str(source)
    dataset = (loaded.meta.get("recipe") or {}).get("dataset") or "fashion-mnist"
    if metrics is None and loaded.cfg.data != "points" and _accuracy_skip_reason(loaded.G, dataset) is None:
        names.append("accuracy")
    command = _command(src, names, run)
    out: dict[str, Any] = {"source": src, "variant": loaded.name, "step": loaded.meta.get("step")}
    if loaded.cfg.data == "points":  # image metrics do not apply to 2-D points; the toys have their own
        out["metrics"] = _evaluate_toy(loaded.G, dataset, names, run)
        image_only = [m for m in names if m != "pr"]
        if image_only:
            why = "an image metric; 2-D toys report modes covered and high-quality share instead"
            out["skipped"] = {m: why for m in image_only}
    else:
        out["metrics"], skipped = _evaluate_images(loaded, dataset, names, run, inception_weights_path)
        if skipped:
            out["skipped"] = skipped
    for entry in out["metrics"].values():
        entry["command"] = command  # each value stays reproducible once copied into a model card
    out["command"] = command
    out["seconds"] = round(time.time() - t0, 1)
    return out


def _evaluate_images(
    loaded: Loaded, dataset: str, names: list[str], run: Settings, inception_weights_path: str | Path | None
) -> tuple[dict[str, Any], dict[str, str]]:
    G, cfg = loaded.G, loaded.cfg
    skipped: dict[str, str] = {}
    fidelity = [m for m in names if m not in ("coverage", "accuracy")]
    is_fmnist = dataset == "fashion-mnist"
    if run.extractor == "fmnist" and fidelity and not is_fmnist:
        raise MetricsError(
            f"the fmnist extractor only judges Fashion-MNIST models and this one learned {dataset!r}; "
            "use --extractor inception"
        )
    want_coverage = "coverage" in names
    if want_coverage and not is_fmnist:
        why = f"class coverage needs a Fashion-MNIST model; this one learned {dataset!r}"
        if not fidelity:
            raise MetricsError(why)
        skipped["coverage"], want_coverage = why, False
    want_accuracy = "accuracy" in names
    why = _accuracy_skip_reason(G, dataset) if want_accuracy else None
    if why:
        if names == ["accuracy"]:
            raise MetricsError(why)
        skipped["accuracy"], want_accuracy = why, False
    if run.truncation != 1.0 and "mapping" not in capabilities(G):
        raise MetricsError(
            "truncation needs a generator with a mapping network (e.g. stylegan-lite); use --truncation 1"
        )
    # Resolve the extractor first: a missing Inception file should fail before any real work.
    ext = get_extractor(run.extractor if fidelity else "fmnist", inception_weights_path)
    real = load_dataset(dataset, resolution=cfg.resolution, channels=cfg.channels, split=run.split)
    n_real = min(run.n, len(real))
    real_images = real.images
    if n_real < len(real):  # a fixed subset, the same for every evaluation seed (so the cache serves all)
        order = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
        real_images = real.images[order[:n_real]]

    on_cuda = device_of(G).type == "cuda"
    tally = ClassTally(load_classifier(device_of(G) if on_cuda else "cpu")) if want_coverage else None
    observers = [tally] if tally else []
    gen = GeneratedImages(
        G, run.n, run.seed, truncation=run.truncation, block=run.batch_size, rgb=ext.rgb, observers=observers
    )
    entries: dict[str, Any] = {}
    if fidelity:
        key = _real_key(dataset, run.split, cfg.resolution, cfg.channels, n_real, ext)
        real_ds = RealImages(real_images, ext.rgb)
        res = _fidelity(gen, real_ds, fidelity, ext, key, n_real, run, cuda=on_cuda)
        proto = _protocol(ext, cfg.resolution, dataset, n_real, len(real), run)
        entries.update(_fidelity_entries(res, proto, min(KID_SUBSET_SIZE, run.n, n_real)))
    elif tally is not None:
        for b in range((run.n + run.batch_size - 1) // run.batch_size):
            gen.block_images(b)  # coverage alone: stream the samples past the tally
    if tally is not None:
        fmnist = get_extractor("fmnist")
        key = _real_key(dataset, run.split, cfg.resolution, cfg.channels, len(real), fmnist)
        cov = class_coverage(tally.histogram(), _data_class_histogram(real, key, tally.net, run.cache))
        proto = {
            **_protocol(fmnist, cfg.resolution, dataset, len(real), len(real), run),
            "rule": f"a class counts when its share of the samples is >= {COVERAGE_MIN_RATIO:g} x its share in the data; "
            "KL(generated || data) in nats between predicted-class histograms",
            "data_histogram": f"classifier predictions on the whole {run.split} split",
        }
        entries["coverage"] = {"value": cov, "protocol": proto}
        entries["class_kl"] = {"value": cov["kl"], "protocol": proto}
    if want_accuracy:
        if run.truncation != 1.0:
            raise MetricsError("conditional accuracy is measured without truncation; use --truncation 1")
        net = tally.net if tally is not None else load_classifier(device_of(G) if on_cuda else "cpu")
        per = run.n // FMNIST_CLASSES
        acc = conditional_accuracy(G, per, run.seed, net=net, block=run.batch_size)
        fmnist = get_extractor("fmnist")
        proto = {
            **fmnist.protocol(cfg.resolution),
            "n_generated": per * FMNIST_CLASSES,
            "n_per_class": per,
            "seed": run.seed,
            "truncation": run.truncation,
            "rule": f"for each class k, {per} samples of G(z, k) (the same z for every k), classified by the fmnist "
            "classifier; accuracy = share predicted k",
        }
        entries["accuracy"] = {
            "value": acc["accuracy"],
            "per_class": dict(zip(FMNIST_CLASS_NAMES, acc["per_class"])),
            "confusion": acc["confusion"],
            "protocol": proto,
        }
    return entries, skipped


def _fidelity(
    gen: GeneratedImages,
    real: RealImages,
    names: list[str],
    ext: Extractor,
    key: str,
    n_real: int,
    run: Settings,
    *,
    cuda: bool,
) -> dict[str, float]:
    """One torch_fidelity.calculate_metrics call: a single pass over the generated samples for all metrics."""
    kwargs: dict[str, Any] = {}
    if any(m in names for m in ("fid", "kid", "pr")):
        # torch-fidelity caches input2's features (and FID statistics) under this name; input1 is never cached.
        kwargs.update(input2=real, input2_cache_name=key if run.cache else None)
    try:
        return torch_fidelity.calculate_metrics(
            input1=gen,
            **kwargs,
            feature_extractor=ext.fidelity_name,
            **ext.kwargs,
            fid="fid" in names,
            kid="kid" in names,
            isc="is" in names,
            prc="pr" in names,
            kid_subsets=KID_SUBSETS,
            kid_subset_size=min(KID_SUBSET_SIZE, run.n, n_real),
            isc_splits=IS_SPLITS,
            prc_neighborhood=PR_K,
            prc_batch_size=PR_BATCH,
            rng_seed=run.seed,
            batch_size=run.batch_size,
            cuda=cuda,
            # save_cpu_ram: no DataLoader workers (GeneratedImages relies on in-order, in-process reads)
            # and precision/recall in row blocks rather than whole n x n distance matrices.
            save_cpu_ram=True,
            cache=run.cache,
            cache_root=str(cache_dir() / "fidelity"),
            verbose=run.verbose,
        )
    except GanhubError:
        raise
    except ValueError as e:  # torch-fidelity's argument checks (vassert)
        raise MetricsError(f"torch-fidelity refused the evaluation: {e}") from None


def _fidelity_entries(res: dict[str, float], proto: dict[str, Any], kid_size: int) -> dict[str, Any]:
    by = {"computed_by": f"torch-fidelity {torch_fidelity.__version__}"}
    table = {  # our name: (torch-fidelity's key, its std key, protocol details)
        "fid": ("frechet_inception_distance", None, {}),
        "kid": (
            "kernel_inception_distance_mean",
            "kernel_inception_distance_std",
            {"kid_subset_size": kid_size, "kid_subsets": KID_SUBSETS, "kernel": "polynomial, degree 3"},
        ),
        "is": ("inception_score_mean", "inception_score_std", {"is_splits": IS_SPLITS}),
        "precision": ("precision", None, {"k": PR_K}),
        "recall": ("recall", None, {"k": PR_K}),
    }
    entries = {}
    for name, (key, key_std, extra) in table.items():
        if key in res:
            entries[name] = {"value": float(res[key]), "protocol": {**proto, **extra, **by}}
            if key_std:
                entries[name]["std"] = float(res[key_std])
    return entries


def _protocol(
    ext: Extractor, res: int, dataset: str, n_real: int, n_split: int, run: Settings
) -> dict[str, Any]:
    subset = (
        "the whole split" if n_real >= n_split else f"a fixed subset of the {n_split} (permutation seed 0)"
    )
    return {
        **ext.protocol(res),
        "real": f"{dataset}, {run.split} split",
        "n_real": n_real,
        "real_subset": subset,
        "n_generated": run.n,
        "seed": run.seed,
        "truncation": run.truncation,
    }


# ---------------------------------------------------------------------------------------------------------
# Recording and the CLI


def write_results(folder: str | Path, result: dict[str, Any]) -> Path:
    """Merge `result["metrics"]` into the folder's config.json "metrics" (atomic), for the model card."""
    return RunFolder(folder).write_metrics(result["metrics"])


def _local_folder(src: str) -> Path | None:
    """The folder `--write` may write to: a local run folder or a bundled weights entry, not a Hub download."""
    p = Path(src).expanduser()
    if RunFolder(p).has_config():
        return p
    if src in bundled():
        return weights_dir() / src
    return None


def _fmt(name: str, m: dict[str, Any]) -> str:
    v = m["value"]
    if name == "coverage":
        return f"{v['classes']}/{v['of']}"
    if name == "modes_covered":
        return f"{v}/{m['of']}"
    if name in ("precision", "recall", "high_quality", "accuracy"):
        return f"{v:.3f}"
    if name in ("kid", "class_kl"):
        return f"{v:.4g}"
    return f"{v:.2f}"


COLUMNS = {
    "fid": "FID",
    "kid": "KID",
    "is": "IS",
    "precision": "precision",
    "recall": "recall",
    "coverage": "classes",
    "class_kl": "class KL",
    "accuracy": "cond. acc",
    "modes_covered": "modes",
    "high_quality": "high quality",
}
DETAILS = (
    "computed_by",
    "k",
    "kid_subset_size",
    "kid_subsets",
    "kernel",
    "is_splits",
    "rule",
    "data_histogram",
    "n_per_class",
)


def format_table(results: list[dict[str, Any]]) -> str:
    """One row per source; under it the protocol all values share, then what differs between metrics."""
    cols = [c for c in COLUMNS if any(c in r["metrics"] for r in results)]
    header = ["source", *(COLUMNS[c] for c in cols), "seconds"]
    rows = [
        [
            r["source"],
            *(_fmt(c, r["metrics"][c]) if c in r["metrics"] else "–" for c in cols),
            f"{r['seconds']:.0f}",
        ]
        for r in results
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *rows]]

    entries = [(r["source"], name, m) for r in results for name, m in r["metrics"].items()]
    protos = [{k: v for k, v in m["protocol"].items() if k not in DETAILS} for _, _, m in entries]
    common = {k: v for k, v in protos[0].items() if all(p.get(k) == v for p in protos)} if protos else {}
    lines.append("protocol: " + "; ".join(f"{k}={v}" for k, v in common.items()))
    # what differs from the common protocol -> {metric: sources it applies to}
    groups: dict[str, dict[str, list[str]]] = {}
    for (src, name, _), p in zip(entries, protos):
        rest = "; ".join(f"{k}={v}" for k, v in p.items() if k not in common)
        if rest:
            groups.setdefault(rest, {}).setdefault(name, []).append(src)
    for rest, by_metric in groups.items():
        labels = [
            COLUMNS[name] + ("" if len(srcs) == len(results) else f" ({', '.join(srcs)})")
            for name, srcs in by_metric.items()
        ]
        lines.append(f"  {', '.join(labels)}: {rest}")
    notes: dict[str, str] = {}
    for _, name, m in entries:
        p = m["protocol"]
        if name == "kid":
            notes["KID"] = f"{p['kid_subsets']} subsets of {p['kid_subset_size']}, {p['kernel']} kernel"
        elif name in ("precision", "recall"):
            notes["precision/recall"] = f"k={p['k']} nearest neighbours (Kynkäänniemi et al. 2019)"
        elif name == "is":
            notes["IS"] = f"{p['is_splits']} splits"
        elif name == "coverage":
            notes["classes"] = p["rule"] + f"; data histogram: {p['data_histogram']}"
        elif name == "modes_covered":
            notes["modes"] = p["rule"]
        elif name == "accuracy":
            notes["cond. acc"] = p["rule"]
        if "computed_by" in p:
            notes["computed by"] = p["computed_by"]
    for r in results:
        if "accuracy" in r["metrics"]:
            per = r["metrics"]["accuracy"]["per_class"]
            notes[f"cond. acc per class ({r['source']})"] = ", ".join(f"{k} {v:.2f}" for k, v in per.items())
        for name, why in r.get("skipped", {}).items():
            notes[f"{name} skipped for {r['source']}"] = why
    lines += [f"  {k}: {v}" for k, v in notes.items()]
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace) -> int:
    names = None if args.metrics is None else _parse_metrics(args.metrics)  # a typo fails before any loading
    targets = {}
    if args.write:
        for src in args.sources:
            targets[src] = _local_folder(src)
            if targets[src] is None:
                raise MetricsError(
                    f"--write records results in a local run folder; {src!r} is not one (Hub repos are read-only here)"
                )
    results = []
    for src in args.sources:
        if not args.json:
            print(
                f"evaluating {src} on {args.n} samples ...",
                file=sys.stderr,
                flush=True,
            )
        r = evaluate(
            src,
            metrics=names,
            n=args.n,
            extractor=args.extractor,
            seed=args.seed,
            batch_size=args.batch_size,
            device=args.device,
            real_split=args.split,
            truncation=args.truncation,
            inception_weights_path=args.inception_weights,
            cache=not args.no_cache,
        )
        results.append(r)
        if args.write:
            write_results(targets[src], r)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    else:
        print(format_table(results))
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    s = subparsers.add_parser(
        "eval",
        help="FID, KID, IS, precision/recall and class coverage, each with its protocol",
        description="Evaluate generators against the real data they learned. Offline by default (--extractor fmnist); "
        "--extractor inception gives numbers comparable with papers. Compare numbers only at equal --n.",
    )
    s.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="run folders, bundled weights names or Hub repo ids"
    )
    s.add_argument(
        "--metrics",
        help=f"comma-separated, from {','.join(ALL_METRICS)} (default {','.join(DEFAULT_METRICS)}, "
        "+ accuracy for a conditional generator)",
    )
    s.add_argument(
        "--n",
        type=int,
        default=DEFAULT_N,
        help=f"generated samples (default {DEFAULT_N}); real: min(n, split size)",
    )
    s.add_argument("--extractor", default="fmnist", choices=["fmnist", "inception"])
    s.add_argument(
        "--inception-weights",
        metavar="PATH",
        help="torch-fidelity's Inception-v3 weights (.pth); or $GANHUB_INCEPTION_WEIGHTS",
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--split", default="test", choices=["train", "test"], help="real split to compare with (default test)"
    )
    s.add_argument("--truncation", type=float, default=1.0, help="psi for generators with a mapping network")
    s.add_argument("--batch-size", type=int, default=BATCH)
    s.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    s.add_argument("--no-cache", action="store_true", help="recompute the real-data statistics")
    s.add_argument("--json", action="store_true", help="print the results as JSON")
    s.add_argument(
        "--write", action="store_true", help="record the results in each (local) folder's config.json"
    )
    s.set_defaults(func=cmd_eval)
