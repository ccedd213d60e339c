"""Train the Fashion-MNIST classifier shipped in weights/fmnist-classifier (feature extractor for offline
FID/KID/PR and the judge of class coverage). Deterministic on CPU for a given seed and thread count.

    python scripts/train_classifier.py --out weights/fmnist-classifier
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ganhub.classifier import FMNISTClassifier
from ganhub.data import load_dataset


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    correct = sum((model(xb)[1].argmax(1) == yb).sum().item() for xb, yb in zip(x.split(1000), y.split(1000)))
    return correct / len(y)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("weights/fmnist-classifier"))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    train, test = load_dataset("fashion-mnist", split="train"), load_dataset("fashion-mnist", split="test")
    xt, yt = test.batch(torch.arange(len(test))), test.labels
    model = FMNISTClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    steps = args.epochs * (len(train) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        for i in range(len(train) // 128):
            idx = perm[i * 128 : (i + 1) * 128]
            x, y = train.batch(idx), train.labels[idx]
            flip = torch.rand(len(x), generator=gen) < 0.5  # garments are left-right symmetric enough
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = F.cross_entropy(model(x)[1], y, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}: test accuracy {accuracy(model, xt, yt):.4f} ({time.time() - t0:.0f} s)", flush=True)
    acc = accuracy(model, xt, yt)
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out / "model.safetensors")
    cfg = {"kind": "fmnist-classifier", "width": model.width, "features": model.features, "input": "1x32x32 in [-1, 1], bilinear 28->32",
           "test_accuracy": round(acc, 4), "test_set": "Fashion-MNIST test split, 10,000 images",
           "epochs": args.epochs, "seed": args.seed, "command": f"python scripts/train_classifier.py --out {args.out} --epochs {args.epochs} --seed {args.seed}"}
    (args.out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (args.out / "README.md").write_text(
        "# Fashion-MNIST classifier (ganhub feature extractor)\n\n"
        f"A small CNN (about {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters) used by `ganhub eval --extractor fmnist`: "
        "its 128-d penultimate features for FID, KID and precision/recall, its logits for IS and class coverage.\n\n"
        f"Test accuracy: **{acc:.2%}** on the 10,000-image Fashion-MNIST test split.\n\n"
        f"Reproduce: `{cfg['command']}`\n"
    )
    print(json.dumps(cfg))


if __name__ == "__main__":
    main()
