"""Evaluation: FID, KID, IS and precision/recall through torch-fidelity; class coverage; 2-D toy metrics.

Feature extractors (registered with torch-fidelity):
  fmnist     ganhub's own Fashion-MNIST classifier (weights/fmnist-classifier): works offline everywhere.
             Numbers are comparable between ganhub runs, NOT with papers.
  inception  torch-fidelity's Inception-v3 ("inception-v3-compat"), the standard whose FIDs compare with
             papers: weights from --inception-weights, $GANHUB_INCEPTION_WEIGHTS, torch's hub cache, or
             downloaded when online. Offline without them: an error saying how to supply them, never a
             silent switch to another extractor.

Every value carries its protocol (extractor, image size and resize, sample counts, real split, seed).
Generated samples stream through torch-fidelity in batches; real-data features are cached per
(dataset, split, size, extractor, n) under $GANHUB_CACHE/fidelity.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch_fidelity
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.generative_model_modulewrapper import GenerativeModelModuleWrapper

from ganhub import classifier
from ganhub.data import cache_dir, load_dataset, toy_points
from ganhub.errors import GanhubError
from ganhub.folder import CONFIG, Loaded, atomic_write_json, load_generator
from ganhub.sample import generate, latents, seeded

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
ALL = ("fid", "kid", "is", "pr", "coverage")
COVERAGE_MIN_SHARE = 0.25  # a class counts as generated if it gets >= 1/4 of its fair share (1/K) of samples


class MetricsError(GanhubError):
    pass


class FMNISTExtractor(FeatureExtractorBase):
    """torch-fidelity wrapper around ganhub's classifier. Accepts uint8 (B, 1|3, H, W) of any size."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        self.net = classifier.load()

    @staticmethod
    def get_provided_features_list():
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits"}.get(metric, "features")

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 32, 32, dtype=torch.uint8)

    def forward(self, x: torch.Tensor):
        x = x.float()
        if x.shape[1] == 3:  # ITU-R 601 luma: the classifier sees grey images
            x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device)[None, :, None, None]).sum(1, keepdim=True)
        if x.shape[-1] != 32 or x.shape[-2] != 32:
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        f, logits = self.net(x / 127.5 - 1)
        out = {"features": f, "logits": logits}
        return tuple(out[k] for k in self.features_list)


torch_fidelity.register_feature_extractor("ganhub-fmnist", FMNISTExtractor)


class _Uint8Generator(nn.Module):
    """G(z) in [-1, 1] -> uint8 images, as torch-fidelity's extractors expect; grey -> RGB for Inception."""

    def __init__(self, G: nn.Module, rgb: bool):
        super().__init__()
        self.G, self.rgb = G, rgb

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = ((self.G(z.to(next(self.G.parameters()).device)).float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return x.expand(-1, 3, -1, -1) if self.rgb and x.shape[1] == 1 else x


class _RealImages(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, rgb: bool):
        self.images, self.rgb = images, rgb

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.images[i]
        return x.expand(3, -1, -1) if self.rgb and x.shape[0] == 1 else x


def inception_weights(path: str | None = None) -> str | None:
    """Path to Inception weights, None when torch-fidelity may download them, or a MetricsError."""
    candidates = [path, os.environ.get("GANHUB_INCEPTION_WEIGHTS"),
                  str(Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_URL.rsplit("/", 1)[1])]
    for c in candidates:
        if c and Path(c).is_file():
            try:  # torch-fidelity unpickles this file; refuse anything that is not plain tensors first
                torch.load(c, map_location="cpu", weights_only=True)
            except Exception:
                raise MetricsError(f"{c} is not a plain PyTorch state dict of Inception-v3 weights") from None
            return c
        if c and c in (path, os.environ.get("GANHUB_INCEPTION_WEIGHTS")):
            raise MetricsError(f"Inception weights not found at {c}; check the path")
    try:
        socket.create_connection(("github.com", 443), timeout=3).close()
    except OSError:
        raise MetricsError(
            "Inception-v3 weights are not available offline: download " + INCEPTION_URL + " on a machine with "
            "internet and pass --inception-weights PATH (or set GANHUB_INCEPTION_WEIGHTS), or use --extractor fmnist"
        ) from None
    return None  # online: torch-fidelity downloads them into torch's hub cache


def _real_key(dataset: str, split: str, res: int, ch: int, n: int, extractor: str) -> str:
    h = hashlib.sha256((classifier.path() / "model.safetensors").read_bytes()).hexdigest()[:8] if extractor == "fmnist" else "v3"
    return f"ganhub-{dataset}-{split}-{res}px-{ch}ch-n{n}-{extractor}-{h}".replace("/", "_")


@torch.no_grad()
def class_histogram(images: torch.Tensor, net: nn.Module) -> torch.Tensor:
    """Predicted-class histogram (10,) of images (N, C, H, W) in [-1, 1] under the fmnist classifier."""
    counts = torch.zeros(10)
    for xb in images.split(500):
        if xb.shape[1] == 3:
            xb = (xb * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)
        if xb.shape[-1] != 32:
            xb = F.interpolate(xb, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        counts += torch.bincount(net(xb)[1].argmax(1), minlength=10).float()
    return counts / counts.sum()


def coverage_from_histograms(p_gen: torch.Tensor, p_data: torch.Tensor) -> dict[str, Any]:
    """Classes generated (share >= COVERAGE_MIN_SHARE / K) and KL(p_gen || p_data) in nats."""
    k = len(p_gen)
    eps = 1e-8
    kl = float((p_gen * ((p_gen + eps) / (p_data + eps)).log()).sum())
    covered = int((p_gen >= COVERAGE_MIN_SHARE / k).sum())
    return {"classes": covered, "of": k, "kl": kl, "histogram": [round(float(x), 4) for x in p_gen]}


def toy_metrics(points: torch.Tensor, modes: torch.Tensor, std: float) -> dict[str, Any]:
    """Mode-collapse metrics for the 2-D mixtures (Srivastava et al. 2017; Gulrajani et al. 2017):
    a sample is high quality if within 3 std of its nearest mode; a mode is covered if it receives at
    least a quarter of its fair share (n / M / 4) of high-quality samples."""
    d = torch.cdist(points.float(), modes.float())
    dist, nearest = d.min(1)
    hq = dist <= 3 * std
    counts = torch.bincount(nearest[hq], minlength=len(modes))
    covered = int((counts >= len(points) / len(modes) / 4).sum())
    return {"modes_covered": covered, "modes": len(modes), "high_quality": float(hq.float().mean())}


def _protocol(extractor: str, res: int, n_real: int, n_gen: int, dataset: str, split: str, seed: int, **extra) -> dict:
    size = "299 px, torch-fidelity's Inception resize" if extractor == "inception" else "32 px (bilinear, antialiased)"
    return {"extractor": extractor if extractor == "inception" else "fmnist (weights/fmnist-classifier)",
            "image_size": f"generated {res} px -> {size}", "real": f"{dataset} {split} split", "n_real": n_real,
            "n_generated": n_gen, "seed": seed, **extra}


def evaluate(
    source: str | Path | Loaded,
    *,
    metrics: tuple[str, ...] | list[str] = ("fid", "kid", "pr", "coverage"),
    n: int = 10_000,
    extractor: str = "fmnist",
    seed: int = 0,
    dataset: str | None = None,
    split: str = "test",
    inception_weights_path: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Evaluate a generator. Returns {"source", "variant", "step", "metrics": {name: {"value", "protocol", "command"}}}."""
    metrics = [m.strip().lower() for m in metrics if m.strip()]
    bad = sorted(set(metrics) - set(ALL))
    if bad:
        raise MetricsError(f"unknown metric(s) {bad}; choose from {', '.join(ALL)}")
    if extractor not in ("fmnist", "inception"):
        raise MetricsError(f"unknown extractor {extractor!r}; use fmnist or inception")
    if n < 50:
        raise MetricsError(f"--n must be at least 50 samples for meaningful statistics, got {n}")
    loaded = source if isinstance(source, Loaded) else load_generator(source, device=device)
    G, cfg = loaded.G, loaded.cfg
    dataset = dataset or loaded.meta.get("recipe", {}).get("dataset", "fashion-mnist")
    command = f"ganhub eval {source if not isinstance(source, Loaded) else loaded.path} --metrics {','.join(metrics)} --n {n} --extractor {extractor} --seed {seed}"
    out: dict[str, Any] = {"source": str(source if not isinstance(source, Loaded) else loaded.path), "variant": loaded.name,
                           "step": loaded.meta.get("step"), "metrics": {}}

    if cfg.data == "points":  # the 2-D toys: image metrics do not apply
        toy = toy_points(dataset if dataset in ("ring8", "grid25") else "ring8")
        pts = generate(G, latents(n, cfg.z_dim, seed), seed=seed)
        out["metrics"]["toy"] = {"value": toy_metrics(pts, toy.modes, toy.mode_std),
                                 "protocol": {"dataset": toy.name, "n_generated": n, "seed": seed, "threshold": "3 std"},
                                 "command": command}
        return out

    if extractor == "fmnist" and dataset != "fashion-mnist":
        raise MetricsError(f"the fmnist extractor only judges Fashion-MNIST models; this one learned {dataset!r}: use --extractor inception")
    fidelity_metrics = [m for m in metrics if m != "coverage"]
    real = load_dataset(dataset, resolution=cfg.resolution, channels=cfg.channels, split=split)
    n_real = min(len(real), n)
    if fidelity_metrics:
        rgb = extractor == "inception"
        kwargs: dict[str, Any] = {}
        if extractor == "inception":
            kwargs["feature_extractor_weights_path"] = inception_weights(inception_weights_path)
        cuda = torch.cuda.is_available() and next(G.parameters()).device.type == "cuda"
        wrapped = GenerativeModelModuleWrapper(_Uint8Generator(G, rgb), cfg.z_dim, "normal", 0)
        real_ds = _RealImages(real.images[:n_real], rgb)
        with seeded(seed, next(G.parameters()).device):
            try:
                res = torch_fidelity.calculate_metrics(
                    input1=wrapped, input1_model_num_samples=n, input2=real_ds,
                    input2_cache_name=_real_key(dataset, split, cfg.resolution, cfg.channels, n_real, extractor),
                    cache_root=str(cache_dir() / "fidelity"), cache=True,
                    feature_extractor="ganhub-fmnist" if extractor == "fmnist" else "inception-v3-compat",
                    fid="fid" in metrics, kid="kid" in metrics, isc="is" in metrics, prc="pr" in metrics,
                    kid_subset_size=min(1000, n, n_real), isc_splits=10, rng_seed=seed, cuda=cuda,
                    batch_size=250, save_cpu_ram=True, verbose=False, **kwargs,
                )
            except GanhubError:
                raise
            except Exception as e:  # torch-fidelity raises plain exceptions for e.g. too few samples
                raise MetricsError(f"torch-fidelity failed: {type(e).__name__}: {e}") from None
        proto = _protocol(extractor, cfg.resolution, n_real, n, dataset, split, seed)
        table = {
            "fid": ("frechet_inception_distance", {}),
            "kid": ("kernel_inception_distance_mean", {"kid_subset_size": min(1000, n, n_real), "kid_subsets": 100}),
            "is": ("inception_score_mean", {"splits": 10}),
            "precision": ("precision", {"k": 3}),
            "recall": ("recall", {"k": 3}),
        }
        for name, (key, extra) in table.items():
            if key in res:
                out["metrics"][name] = {"value": float(res[key]), "protocol": {**proto, **extra}, "command": command}
        if "kernel_inception_distance_std" in res:
            out["metrics"]["kid"]["std"] = float(res["kernel_inception_distance_std"])
    if "coverage" in metrics:
        if dataset != "fashion-mnist":
            raise MetricsError("class coverage needs the Fashion-MNIST classifier; it applies to Fashion-MNIST models only")
        net = classifier.load()
        gen = generate(G, latents(n, cfg.z_dim, seed), seed=seed)
        p_gen = class_histogram(gen, net)
        p_data = class_histogram(real.batch(torch.arange(n_real)), net)
        cov = coverage_from_histograms(p_gen, p_data)
        out["metrics"]["coverage"] = {
            "value": cov,
            "protocol": _protocol("fmnist", cfg.resolution, n_real, n, dataset, split, seed,
                                  rule=f"class counted if >= {COVERAGE_MIN_SHARE}/K of samples; KL(p_gen || p_data), nats"),
            "command": command,
        }
    return out


def write_results(folder: Path, result: dict[str, Any]) -> None:
    """Record results in the folder's config.json (atomic) so the model card shows them."""
    path = folder / CONFIG
    meta = json.loads(path.read_text())
    meta.setdefault("metrics", {}).update(result["metrics"])
    atomic_write_json(path, meta)


def _fmt(name: str, m: dict[str, Any]) -> str:
    v = m["value"]
    if name == "coverage":
        return f"{v['classes']}/{v['of']} classes, KL {v['kl']:.3f}"
    if name == "toy":
        return f"{v['modes_covered']}/{v['modes']} modes, {v['high_quality']:.1%} high quality"
    return f"{v:.4f}" if name == "kid" else f"{v:.3f}" if name in ("precision", "recall") else f"{v:.2f}"


def cmd_eval(args: argparse.Namespace) -> int:
    results = []
    for src in args.sources:
        r = evaluate(src, metrics=args.metrics.split(","), n=args.n, extractor=args.extractor, seed=args.seed,
                     inception_weights_path=args.inception_weights, device=args.device)
        results.append(r)
        if args.write:
            folder = Path(src)
            if not (folder / CONFIG).is_file():
                raise MetricsError(f"--write needs a local run folder; {src!r} is not one")
            write_results(folder, r)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
        return 0
    names = [k for k in ("fid", "kid", "is", "precision", "recall", "coverage", "toy") if any(k in r["metrics"] for r in results)]
    w = max(len(r["source"]) for r in results) + 2
    print("source".ljust(w) + "".join(n.ljust(26 if n in ("coverage", "toy") else 12) for n in names))
    for r in results:
        print(r["source"].ljust(w) + "".join(
            (_fmt(n, r["metrics"][n]) if n in r["metrics"] else "-").ljust(26 if n in ("coverage", "toy") else 12) for n in names))
    first = next(iter(results[0]["metrics"].values()))
    print("protocol: " + ", ".join(f"{k}={v}" for k, v in first["protocol"].items()))
    return 0


def add_cli(subparsers) -> None:
    s = subparsers.add_parser("eval", help="FID, KID, IS, precision/recall and class coverage, with protocol")
    s.add_argument("sources", nargs="+", help="run folders, bundled weights names or Hub repo ids")
    s.add_argument("--metrics", default="fid,kid,pr,coverage", help=f"comma-separated from {','.join(ALL)}")
    s.add_argument("--n", type=int, default=10_000, help="generated samples (real samples: min(n, split size))")
    s.add_argument("--extractor", default="fmnist", choices=["fmnist", "inception"])
    s.add_argument("--inception-weights", help="path to torch-fidelity's Inception-v3 weights (.pth)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device")
    s.add_argument("--json", action="store_true")
    s.add_argument("--write", action="store_true", help="record the results in each run folder's config.json")
    s.set_defaults(func=cmd_eval)
