"""Feature extractors for evaluation, registered with torch-fidelity.

  fmnist     ganhub's own Fashion-MNIST classifier (weights/fmnist-classifier, trained by
             scripts/train_classifier.py). Works offline on any machine. Its 128-d penultimate layer is
             the feature space of FID, KID and precision/recall; its logits give IS and class coverage.
             Numbers compare between ganhub runs, not with papers.
  inception  torch-fidelity's "inception-v3-compat" (the TF-ported Inception-v3 of the FID paper), whose
             numbers compare with papers. Its weights come from a path the user gives, from
             $GANHUB_INCEPTION_WEIGHTS, from torch's hub cache, or are downloaded once when online.
             Without them: a GanhubError that says how to supply them, never a switch to another extractor.

Both extractors take uint8 images (B, C, H, W), the interface of every torch-fidelity extractor.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torch_fidelity
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ganhub.errors import FolderError, GanhubError
from ganhub.run import load_state_strict, read_safetensors
from ganhub.source import weights_dir

CLASSIFIER_NAME = "fmnist-classifier"  # folder under weights/
CLASSIFIER_RESOLUTION = 32
FMNIST = "ganhub-fmnist"  # torch-fidelity registry names
INCEPTION = "inception-v3-compat"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[1]
INCEPTION_SHA256_PREFIX = "6726825d"  # torch.hub convention: the file name carries its hash prefix


class ExtractorError(GanhubError):
    pass


# ---------------------------------------------------------------------------------------------------------
# The Fashion-MNIST classifier


@dataclass(frozen=True)
class ClassifierConfig:
    width: int = 32  # channels of the first conv block; doubled in each of the next two
    features: int = 128  # penultimate width: the feature space of FID/KID/PR
    dropout: float = 0.3


class FMNISTClassifier(nn.Module):
    """Three conv blocks and a 128-d embedding: about 0.36 M parameters, 10 M MACs per image.

    Input: (B, 1, 32, 32) in [-1, 1], Fashion-MNIST bilinearly resized 28 -> 32, as the generators see it.
    """

    def __init__(self, cfg: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        w = cfg.width

        def block(a: int, b: int) -> list[nn.Module]:  # (B, a, H, W) -> (B, b, H/2, W/2)
            return [
                nn.Conv2d(a, b, 3, padding=1, bias=False),
                nn.BatchNorm2d(b),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]

        self.cfg = cfg
        self.body = nn.Sequential(*block(1, w), *block(w, 2 * w), *block(2 * w, 4 * w))  # -> (B, 4w, 4, 4)
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(4 * w * 16, cfg.features), nn.ReLU(inplace=True)
        )
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.features, 10))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (features (B, F), logits (B, 10))."""
        f = self.embed(self.body(x))
        return f, self.head(f)


def classifier_dir() -> Path:
    return weights_dir() / CLASSIFIER_NAME


def classifier_meta() -> dict:
    """The classifier's config.json: architecture, test accuracy, the command that trained it."""
    path = classifier_dir() / "config.json"
    if not path.is_file():
        raise ExtractorError(
            f"the Fashion-MNIST classifier is missing ({path}); restore weights/{CLASSIFIER_NAME} from the repository "
            f"or run `python scripts/train_classifier.py --out weights/{CLASSIFIER_NAME}`"
        )
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ExtractorError(
            f"{path} is not valid JSON; restore weights/{CLASSIFIER_NAME} from the repository"
        ) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("architecture"), dict):
        raise ExtractorError(
            f"{path} has no 'architecture'; it was written by an older script: re-run its training command"
        )
    return meta


def classifier_digest() -> str:
    """First 12 hex digits of the weights' SHA-256: names caches and goes into every protocol."""
    return hashlib.sha256((classifier_dir() / "model.safetensors").read_bytes()).hexdigest()[:12]


def load_classifier(device: str | torch.device = "cpu") -> FMNISTClassifier:
    """The shipped classifier, in eval mode, without gradients."""
    meta = classifier_meta()
    try:
        cfg = ClassifierConfig(**meta["architecture"])
    except TypeError as e:
        raise ExtractorError(
            f"{classifier_dir()}/config.json: bad architecture ({e}); re-run its training command"
        ) from None
    model = FMNISTClassifier(cfg)
    try:
        load_state_strict(
            model,
            read_safetensors(classifier_dir() / "model.safetensors"),
            f"{classifier_dir()}/model.safetensors",
        )
    except FolderError as e:
        raise ExtractorError(str(e)) from None
    # channels_last runs inference about 2x faster on CPU (pooling and BN on NHWC); it changes features
    # only at float rounding level (~1e-5). Training keeps the default layout, so reruns stay bit-exact.
    return model.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)


def classifier_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 1|3, H, W) -> float (B, 1, 32, 32) in [-1, 1], the way the classifier was trained.

    Mirrors ganhub.data.to_uint8_images (ITU-R 601 luma; bilinear, antialiased resize; rounding to
    uint8), so generated images of any size take the path real images took to the training set.
    """
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ExtractorError(
            f"the fmnist extractor expects uint8 images (B, 1|3, H, W), got {x.dtype} {tuple(x.shape)}"
        )
    x = x.float()
    if x.shape[1] == 3:
        luma = torch.tensor([0.299, 0.587, 0.114], device=x.device)
        x = (x * luma[None, :, None, None]).sum(1, keepdim=True).round().clamp(0, 255)
    if x.shape[-2:] != (CLASSIFIER_RESOLUTION, CLASSIFIER_RESOLUTION):
        size = (CLASSIFIER_RESOLUTION, CLASSIFIER_RESOLUTION)
        x = (
            F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            .round()
            .clamp(0, 255)
        )
    return x / 127.5 - 1


class FMNISTFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity's view of the classifier: features "features" (128-d) and "logits" (10)."""

    def __init__(self, name: str, features_list: list[str], **kwargs):
        super().__init__(name, features_list)
        self.net = load_classifier()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        # IS needs class probabilities; the distances (FID, KID, PR) use the penultimate layer, as
        # Inception's pool3 is used for them.
        return "logits" if metric == "isc" else "features"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 1, CLASSIFIER_RESOLUTION, CLASSIFIER_RESOLUTION, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features, logits = self.net(classifier_input(x))
        out = {"features": features, "logits": logits}
        return tuple(out[k] for k in self.features_list)


def register() -> None:
    """Make "ganhub-fmnist" known to torch-fidelity (idempotent: safe on module reload)."""
    if FMNIST not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(FMNIST, FMNISTFeatureExtractor)


register()


# ---------------------------------------------------------------------------------------------------------
# Inception-v3 weights


def _online(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
    """Can we reach `host`? Bounded by `timeout` overall: a DNS lookup ignores socket timeouts and can
    hang for a minute on some networks, so the probe runs in a daemon thread we stop waiting for."""
    if os.environ.get("GANHUB_OFFLINE") or os.environ.get("HF_HUB_OFFLINE"):
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a direct probe says nothing behind a proxy; let the download itself try
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            ok.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok and ok[0])


def _check_state_dict(path: Path) -> None:
    """torch-fidelity reads the file with torch.load(weights_only=False); refuse anything that is not plain
    tensors first (weights_only=True runs no code), so a bad file cannot execute anything."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ExtractorError(
            f"{path} is not a plain PyTorch state dict ({type(e).__name__}); use torch-fidelity's {INCEPTION_FILE}"
        ) from None
    if not isinstance(sd, dict) or "fc.weight" not in sd or tuple(sd["fc.weight"].shape) != (1008, 2048):
        raise ExtractorError(
            f"{path} does not hold torch-fidelity's Inception-v3 weights (no fc of 1008 x 2048); use {INCEPTION_FILE}"
        )


def inception_weights(path: str | Path | None = None, *, download: bool = True) -> Path:
    """Local path of torch-fidelity's Inception-v3 weights: `path`, else $GANHUB_INCEPTION_WEIGHTS, else
    torch's hub cache (where torch-fidelity itself keeps them), else downloaded there when online."""
    given = path or os.environ.get("GANHUB_INCEPTION_WEIGHTS")
    if given:
        p = Path(given).expanduser()
        if not p.is_file():
            where = "--inception-weights" if path else "$GANHUB_INCEPTION_WEIGHTS"
            raise ExtractorError(f"Inception weights not found at {p} (from {where}); check the path")
        _check_state_dict(p)
        return p
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        _check_state_dict(cached)
        return cached
    how = (
        f"download {INCEPTION_URL} on a machine with internet and pass --inception-weights PATH "
        f"(or set GANHUB_INCEPTION_WEIGHTS=PATH, or copy it to {cached}), or run once online; "
        "--extractor fmnist works offline"
    )
    if not download or not _online():
        raise ExtractorError(f"Inception-v3 weights are not available offline: {how}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        with redirect_stdout(sys.stderr):
            torch.hub.download_url_to_file(INCEPTION_URL, str(cached), hash_prefix=INCEPTION_SHA256_PREFIX)
    except Exception as e:  # URLError, HTTPError, a hash mismatch (RuntimeError), ...
        raise ExtractorError(
            f"could not download the Inception-v3 weights ({type(e).__name__}: {e}); {how}"
        ) from None
    _check_state_dict(cached)
    return cached


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class Extractor:
    """What `evaluate` needs to know about an extractor: torch-fidelity's name and kwargs, the image layout
    it takes, and how to describe it in a protocol."""

    name: str  # "fmnist" | "inception"
    fidelity_name: str
    kwargs: dict
    rgb: bool  # Inception takes 3 channels: grey images are repeated
    digest: str  # weights' SHA-256 prefix: part of cache names and protocols
    description: str
    input_size: int
    resize: str

    def protocol(self, resolution: int) -> dict:
        size = (
            f"{resolution} px"
            if resolution == self.input_size
            else f"{resolution} px -> {self.input_size} px ({self.resize})"
        )
        return {"extractor": self.description, "extractor_sha256": self.digest, "image_size": size}


def get_extractor(name: str, inception_weights_path: str | Path | None = None) -> Extractor:
    if name == "fmnist":
        meta = classifier_meta()
        return Extractor(
            "fmnist",
            FMNIST,
            {},
            False,
            classifier_digest(),
            f"fmnist (weights/{CLASSIFIER_NAME}: {meta['architecture']['features']}-d features, "
            f"test accuracy {meta['test_accuracy']:.2%})",
            CLASSIFIER_RESOLUTION,
            "bilinear, antialiased, as ganhub.data resizes the real images",
        )
    if name == "inception":
        p = inception_weights(inception_weights_path)
        digest = file_digest(p)
        ref = (
            "torch-fidelity's reference weights"
            if digest.startswith(INCEPTION_SHA256_PREFIX)
            else "NOT the reference weights"
        )
        return Extractor(
            "inception",
            INCEPTION,
            {"feature_extractor_weights_path": str(p)},
            True,
            digest,
            f"inception-v3-compat (torch-fidelity; 2048-d pool3 features; {ref})",
            299,
            "torch-fidelity's TF1-compatible bilinear; grey repeated to RGB",
        )
    raise ExtractorError(f"unknown extractor {name!r}; use fmnist or inception")
