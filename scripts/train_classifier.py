"""Train the Fashion-MNIST classifier shipped in weights/fmnist-classifier: the offline feature extractor
of `ganhub eval` (FID/KID/precision-recall on its 128-d features, IS and class coverage on its logits).

    python scripts/train_classifier.py --out weights/fmnist-classifier

Bit-for-bit reproducible on CPU for a given seed, thread count (--threads, default 1) and torch build.
Hyperparameters were fixed before the run; the test split is only used for the reported accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save

from ganhub.data import FMNIST_CLASSES, load_dataset
from ganhub.extractors import CLASSIFIER_RESOLUTION, ClassifierConfig, FMNISTClassifier
from ganhub.run import atomic_write, atomic_write_json


@torch.no_grad()
def predict(model: FMNISTClassifier, images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, 32, 32) -> predicted classes (N,)."""
    model.eval()
    return torch.cat([model(x.float() / 127.5 - 1)[1].argmax(1) for x in images.split(1000)])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("weights/fmnist-classifier"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads; results are exact for a fixed count"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # initialisation and dropout
    gen = torch.Generator().manual_seed(args.seed)  # shuffling and flips

    # Exactly what the generators train on: 28 -> 32 bilinear (antialiased), uint8.
    train = load_dataset("fashion-mnist", resolution=CLASSIFIER_RESOLUTION, channels=1, split="train")
    test = load_dataset("fashion-mnist", resolution=CLASSIFIER_RESOLUTION, channels=1, split="test")
    cfg = ClassifierConfig()
    model = FMNISTClassifier(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    per_epoch = len(train) // args.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * per_epoch)

    t0, cpu0 = time.time(), time.process_time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        for i in range(per_epoch):
            idx = perm[i * args.batch_size : (i + 1) * args.batch_size]
            x, y = train.batch(idx)
            # Light augmentation: left-right flips (garments are near-symmetric). No shifts or crops,
            # so the features stay sensitive to the mis-centred or distorted samples FID should punish.
            flip = torch.rand(len(x), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = F.cross_entropy(model(x)[1], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = (predict(model, test.images) == test.labels).float().mean().item()
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.3f}, test accuracy {acc:.4f} ({time.time() - t0:.0f} s)",
            flush=True,
        )

    pred = predict(model, test.images)
    acc = (pred == test.labels).float().mean().item()
    per_class = [(pred[test.labels == c] == c).float().mean().item() for c in range(10)]
    # The judge's own confusion bounds what class coverage can see: report the worst pair.
    conf = torch.zeros(10, 10)
    conf.index_put_((test.labels, pred), torch.ones(len(pred)), accumulate=True)
    conf = conf / conf.sum(1, keepdim=True)
    off = conf - torch.diag(torch.diag(conf))
    worst = int(off.argmax())
    flags = [
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out" and ap.get_default(k) != v
    ]
    command = " ".join(["python scripts/train_classifier.py --out", shlex.quote(str(args.out)), *flags])
    meta = {
        "kind": "fmnist-classifier",
        "architecture": asdict(cfg),
        "input": "(B, 1, 32, 32) in [-1, 1]: Fashion-MNIST 28 -> 32 bilinear (antialiased), as the generators see it",
        "outputs": {"features": f"{cfg.features}-d penultimate layer (after ReLU)", "logits": "10 classes"},
        "classes": list(FMNIST_CLASSES),
        "test_accuracy": round(acc, 4),
        "per_class_test_accuracy": [round(a, 4) for a in per_class],
        "worst_confusion": {
            "true": FMNIST_CLASSES[worst // 10],
            "predicted": FMNIST_CLASSES[worst % 10],
            "rate": round(float(off.flatten()[worst]), 4),
        },
        "test_set": "Fashion-MNIST test split, 10,000 images",
        "training": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": "AdamW (wd 5e-4), one-cycle",
            "lr": args.lr,
            "augmentation": "horizontal flips",
            "seed": args.seed,
            "threads": args.threads,
            "torch": torch.__version__,
            "wall_seconds": round(time.time() - t0),
            "cpu_seconds": round(time.process_time() - cpu0),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        },
        "parameters": sum(p.numel() for p in model.parameters()),
        "command": command,
    }
    # One metadata key only: safetensors writes metadata in hash-map order, so several keys would make the
    # file bytes (and the digest that names ganhub's caches) differ between identical runs.
    weights = save({k: v.contiguous() for k, v in model.state_dict().items()}, metadata={"format": "pt"})
    atomic_write(args.out / "model.safetensors", weights)
    atomic_write_json(args.out / "config.json", meta)
    atomic_write(args.out / "README.md", model_card(meta).encode())
    print(json.dumps({"test_accuracy": meta["test_accuracy"], "command": command}), file=sys.stderr)


def model_card(meta: dict) -> str:
    rows = "\n".join(f"| {c} | {a:.1%} |" for c, a in zip(meta["classes"], meta["per_class_test_accuracy"]))
    w = meta["worst_confusion"]
    t = meta["training"]
    return f"""# Fashion-MNIST classifier: ganhub's offline feature extractor

A small CNN ({meta["parameters"] / 1e6:.2f} M parameters, three conv blocks and a {meta["architecture"]["features"]}-d
embedding) that `ganhub eval --extractor fmnist` (the default) uses to judge Fashion-MNIST generators without a
download:

- its {meta["architecture"]["features"]}-d penultimate features are the space of FID, KID and precision/recall;
- its logits give the Inception Score and class coverage (classes generated, KL to the data's class histogram).

These numbers compare ganhub runs with one another. They do **not** compare with papers, which use Inception-v3
(`ganhub eval --extractor inception`).

**Test accuracy: {meta["test_accuracy"]:.2%}** on the {meta["test_set"]}.

Input: {meta["input"]}.

| class | test accuracy |
|---|---|
{rows}

Its most frequent confusion: {w["true"]} read as {w["predicted"]} ({w["rate"]:.1%} of them). Class coverage
inherits this: a generator of {w["true"].lower()}s alone is seen to produce some {w["predicted"].lower()}s.

## Reproduce

```
{meta["command"]}
```

{t["epochs"]} epochs, batch {t["batch_size"]}, {t["optimizer"]}, peak lr {t["lr"]}, {t["augmentation"]}, seed {t["seed"]},
{t["threads"]} thread(s): {t["cpu_seconds"]} CPU seconds ({t["wall_seconds"]} s wall clock on {t["machine"]}), torch {t["torch"]}.
The run is deterministic: the same seed, thread count and torch build give a bit-identical model.safetensors.
"""


if __name__ == "__main__":
    main()
