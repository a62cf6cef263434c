"""Train the visible-mark head shipped in dedupkit/copyright/visible_mark_head.pt.

Real images from the training split of the installed sources (photo crops,
openclipart drawings on backgrounds, Fashion-MNIST), half of them with a synthetic
visible mark drawn on the fly (dedupkit.copyright.synthetic_marks).  The frozen
EfficientNet-Lite0 trunk turns each into two feature maps, cached on disk, and a
small head is trained on them.  The operating threshold is the score that keeps
the false-positive rate on clean validation images at --target-fpr.

Held-out sources and fonts are never used here; benchmarks/copyright_tagging.py
measures on them.

    nice -n 10 python scripts/train_visible_mark_classifier.py --train-samples 2400 --val-samples 600
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dedupkit.copyright.synthetic_marks import labelled_sample, seed_for
from dedupkit.copyright.visible_marks import DEFAULT_HEAD_PATH, FrozenTrunk, MarkHead


def extract_features(trunk: FrozenTrunk, count: int, seed: int, cache: Path, batch_size: int = 16) -> dict:
    """Features and labels of `count` balanced training-split samples, cached as .npz."""
    if cache.exists():
        with np.load(cache) as stored:
            if len(stored["labels"]) == count:
                return {name: stored[name] for name in stored.files}
    rng = random.Random(seed)
    stride16, stride32, labels = [], [], []
    started = time.time()
    for start in range(0, count, batch_size):
        samples = [labelled_sample(rng, "train", marked=(start + i) % 2 == 0)
                   for i in range(min(batch_size, count - start))]
        features16, features32 = trunk(trunk.pixels([image for image, _, _ in samples]))
        stride16.append(features16.half().numpy())
        stride32.append(features32.half().numpy())
        labels.extend(label for _, label, _ in samples)
        done = start + len(samples)
        if done % (batch_size * 10) == 0 or done == count:
            print(f"  features {done}/{count} ({(time.time() - started) / done:.3f} s/image)", flush=True)
    features = {"stride16": np.concatenate(stride16), "stride32": np.concatenate(stride32),
                "labels": np.asarray(labels, np.float32)}
    np.savez(cache, **features)
    return features


def train_head(train: dict, epochs: int, width: int, seed: int) -> MarkHead:
    torch.manual_seed(seed)
    head = MarkHead(width=width)
    optimizer = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    features16 = torch.from_numpy(train["stride16"])
    features32 = torch.from_numpy(train["stride32"])
    labels = torch.from_numpy(train["labels"])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(epochs):
        head.train()
        order = torch.randperm(len(labels))
        total = 0.0
        for start in range(0, len(order), 64):
            index = order[start : start + 64]
            a, b = features16[index], features32[index]
            if torch.rand(()) < 0.5:  # mirrored marks are still marks; doubles the cached data
                a, b = a.flip(-1), b.flip(-1)
            loss = loss_fn(head(a, b), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        schedule.step()
        print(f"  epoch {epoch + 1}/{epochs} loss {total / len(order):.4f}", flush=True)
    return head.eval()


@torch.inference_mode()
def predict(head: MarkHead, features: dict) -> np.ndarray:
    logits = head(torch.from_numpy(features["stride16"]), torch.from_numpy(features["stride32"]))
    return torch.sigmoid(logits).numpy()


def operating_point(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> tuple[float, float, float]:
    """Lowest threshold whose false-positive rate on clean images is at most target_fpr."""
    clean = np.sort(scores[labels == 0])
    allowed = int(np.floor(target_fpr * len(clean)))
    threshold = float(clean[len(clean) - allowed - 1]) if allowed < len(clean) else 0.0
    threshold = float(np.nextafter(np.float32(threshold), np.float32(1)))
    fpr = float((scores[labels == 0] >= threshold).mean())
    recall = float((scores[labels == 1] >= threshold).mean())
    return threshold, fpr, recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-samples", type=int, default=2400)
    parser.add_argument("--val-samples", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--target-fpr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "dedupkit_visible_marks",
                        help="where extracted features are kept, so a rerun only retrains the head")
    parser.add_argument("--out", type=Path, default=DEFAULT_HEAD_PATH)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    trunk = FrozenTrunk()
    started = time.time()
    print("training features", flush=True)
    train = extract_features(trunk, args.train_samples, seed_for("train", args.seed),
                             args.cache_dir / f"train_{args.seed}_{args.train_samples}.npz")
    print("validation features", flush=True)
    val = extract_features(trunk, args.val_samples, seed_for("val", args.seed),
                           args.cache_dir / f"val_{args.seed}_{args.val_samples}.npz")
    head = train_head(train, args.epochs, args.width, args.seed)
    scores = predict(head, val)
    threshold, fpr, recall = operating_point(scores, val["labels"], args.target_fpr)
    train_accuracy = float(((predict(head, train) >= 0.5) == (train["labels"] == 1)).mean())
    summary = {
        "train_samples": args.train_samples, "val_samples": args.val_samples, "epochs": args.epochs,
        "threshold": threshold, "val_fpr": fpr, "val_recall": recall, "train_accuracy_at_0.5": train_accuracy,
        "seconds": round(time.time() - started, 1),
    }
    print(json.dumps(summary, indent=2), flush=True)
    state = {name: tensor.detach().clone() for name, tensor in head.state_dict().items()}
    torch.save({"state_dict": state, "width": args.width, "threshold": threshold, "training": summary}, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
