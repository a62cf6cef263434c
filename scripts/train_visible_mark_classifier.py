"""Train the visible-mark head shipped in dedupkit/copyright/visible_mark_head.pt.

Real images from the training split of the installed sources (photo crops,
openclipart drawings on backgrounds, Fashion-MNIST), half of them with a synthetic
visible mark drawn on the fly (dedupkit.copyright.synthetic_marks).  The styles the
first head missed most (logos, tiled marks) are drawn more often than in the
benchmark's mix, a share of the clean pictures are photos of printed text, digits,
grids and fine texture, and marked and clean pictures alike are sometimes
downscaled and JPEG-recompressed.  A second series of printed pages (ordinary prose
in training fonts, half of them with a mark drawn over the page) teaches that dense
text is content, not a mark: the head trained without it flagged a third of clean
pages.  The frozen EfficientNet-Lite0 trunk turns each sample into three feature
maps, cached on disk in chunks (a rerun, or a run asking for more samples, only
extracts what is missing), and a small head is trained on them.  The operating
threshold is the score that keeps the false-positive rate on clean validation
images at --target-fpr.

Held-out sources and fonts are never used here; benchmarks/copyright_tagging.py
measures on them.

    nice -n 10 python scripts/train_visible_mark_classifier.py      # the defaults reproduce the shipped head
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

from dedupkit.copyright.synthetic_marks import degrade, document_image, draw_visible_mark, labelled_sample, seed_for
from dedupkit.copyright.visible_marks import DEFAULT_HEAD_PATH, FrozenTrunk, MarkEnsemble, MarkHead

TRAINING_STYLES = {"corner": 0.22, "center": 0.16, "tiled": 0.24, "logo": 0.26, "banner": 0.12}
"""Logos and tiled marks were the first head's weak styles; they are drawn more often here."""
HARD_NEGATIVE_SHARE = 0.2
CHUNK = 256
RECIPES = {"train": "v2", "val": "v2", "train-documents": "doc1", "val-documents": "doc1"}
"""Sample recipe of each series, named in the cache file names so that features of an older recipe
are never reused (the "v2" mix is the one the previous head was trained on; its cache stays valid)."""
MAPS = ("stride8", "stride16", "stride32")


class _Samples(torch.utils.data.Dataset):
    """Sample i of a series, seeded by its index alone, so chunks can be made in any order and in workers.

    Even indices are marked, odd ones clean.  The "mix" series draws the clean pictures
    from the installed photos, drawings and Fashion-MNIST; the "documents" series draws
    printed pages (a mark drawn on half of them), so that dense text on a page is not
    taken for a mark while a mark drawn over a page still is.
    """

    def __init__(self, trunk: FrozenTrunk, series: str, seed: int, first: int, count: int) -> None:
        self.trunk, self.series, self.seed, self.first, self.count = trunk, series, seed, first, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, offset: int) -> tuple[torch.Tensor, float]:
        index = self.first + offset
        rng = random.Random(seed_for(self.series, self.seed, index))
        marked = index % 2 == 0
        if self.series.endswith("documents"):
            image, _ = document_image(rng, "train")
            if marked:
                image, _ = draw_visible_mark(rng, image, "train", TRAINING_STYLES)
        else:
            image, _, _ = labelled_sample(rng, "train", marked=marked, style_weights=TRAINING_STYLES,
                                          hard_negative_share=HARD_NEGATIVE_SHARE)
        return self.trunk.pixels([degrade(rng, image)])[0], float(marked)


def extract_features(trunk: FrozenTrunk, series: str, count: int, seed: int, cache_dir: Path,
                     batch_size: int = 16, workers: int = 1) -> dict:
    """Features and labels of `count` balanced samples of a series, cached in chunks of CHUNK."""
    chunks = []
    started, made = time.time(), 0
    for first in range(0, count, CHUNK):
        size = min(CHUNK, count - first)
        path = cache_dir / f"{series}_{RECIPES[series]}_seed{seed}_{first:06d}_{size}.npz"
        if not path.exists():
            loader = torch.utils.data.DataLoader(_Samples(trunk, series, seed, first, size), batch_size=batch_size,
                                                 num_workers=workers)
            parts = {key: [] for key in (*MAPS, "labels")}
            for pixels, labels in loader:
                for key, features in zip(MAPS, trunk(pixels.contiguous(memory_format=torch.channels_last))):
                    parts[key].append(features.half().numpy())
                parts["labels"].append(labels.float().numpy())
            np.savez(path, **{key: np.concatenate(value) for key, value in parts.items()})
            made += size
            print(f"  {series} features {first + size}/{count} ({(time.time() - started) / made:.3f} s/image)",
                  flush=True)
        with np.load(path) as stored:
            chunks.append({key: stored[key] for key in stored.files})
    return {key: np.concatenate([chunk[key] for chunk in chunks]) for key in (*MAPS, "labels")}


def joined(*parts: dict) -> dict:
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def train_head(train: dict, epochs: int, width: int, seed: int) -> MarkHead:
    torch.manual_seed(seed)
    head = MarkHead(width=width)
    optimizer = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    maps = [torch.from_numpy(train[key]) for key in MAPS]
    labels = torch.from_numpy(train["labels"])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(epochs):
        head.train()
        order = torch.randperm(len(labels))
        total = 0.0
        for start in range(0, len(order), 64):
            index = order[start : start + 64]
            batch = [features[index] for features in maps]
            if torch.rand(()) < 0.5:  # mirrored marks are still marks; doubles the cached data
                batch = [features.flip(-1) for features in batch]
            loss = loss_fn(head(*batch), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        schedule.step()
        print(f"  epoch {epoch + 1}/{epochs} loss {total / len(order):.4f}", flush=True)
    return head.eval()


@torch.inference_mode()
def predict(head: MarkHead | MarkEnsemble, features: dict) -> np.ndarray:
    scores = []
    for start in range(0, len(features["labels"]), 256):
        batch = [torch.from_numpy(features[key][start : start + 256]) for key in MAPS]
        scores.append(torch.sigmoid(head(*batch)).numpy())
    return np.concatenate(scores)


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
    parser.add_argument("--train-samples", type=int, default=24576)
    parser.add_argument("--val-samples", type=int, default=768)
    parser.add_argument("--document-samples", type=int, default=1024, help="printed pages, half of them marked")
    parser.add_argument("--val-document-samples", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=8, help="20 overfits: training loss 0.01, saturated scores")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--heads", type=int, default=3,
                        help="heads trained from seeds seed, seed+1, ...; logits averaged (see MarkEnsemble)")
    parser.add_argument("--target-fpr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="processes drawing samples while the trunk runs")
    parser.add_argument("--extract-only", action="store_true", help="fill the feature cache and stop")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "dedupkit_visible_marks",
                        help="where extracted features are kept, so a rerun only retrains the head")
    parser.add_argument("--out", type=Path, default=DEFAULT_HEAD_PATH)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    trunk = FrozenTrunk()
    started = time.time()
    print("features (validation first)", flush=True)
    counts = {"val": args.val_samples, "val-documents": args.val_document_samples,
              "train": args.train_samples, "train-documents": args.document_samples}
    features = {series: extract_features(trunk, series, count, args.seed, args.cache_dir, workers=args.workers)
                for series, count in counts.items() if count}
    val = joined(*(features[series] for series in ("val", "val-documents") if series in features))
    train = joined(*(features[series] for series in ("train", "train-documents") if series in features))
    if args.extract_only:
        return
    head = MarkEnsemble([train_head(train, args.epochs, args.width, args.seed + offset)
                         for offset in range(args.heads)]).eval()
    scores = predict(head, val)
    threshold, fpr, recall = operating_point(scores, val["labels"], args.target_fpr)
    train_accuracy = float(((predict(head, train) >= 0.5) == (train["labels"] == 1)).mean())
    summary = {
        "samples": counts, "epochs": args.epochs, "heads": args.heads, "recipes": RECIPES, "training_styles": TRAINING_STYLES, "hard_negative_share": HARD_NEGATIVE_SHARE,
        "threshold": threshold, "val_fpr": fpr, "val_recall": recall, "train_accuracy_at_0.5": train_accuracy,
        "val_by_series_at_that_threshold": {
            series: {"fpr": float((series_scores[features[series]["labels"] == 0] >= threshold).mean()),
                     "recall": float((series_scores[features[series]["labels"] == 1] >= threshold).mean())}
            for series in ("val", "val-documents") if series in features
            for series_scores in [predict(head, features[series])]},
        "seconds": round(time.time() - started, 1),
    }
    print(json.dumps(summary, indent=2), flush=True)
    states = [{name: tensor.detach().clone() for name, tensor in member.state_dict().items()} for member in head.heads]
    torch.save({"state_dicts": states, "width": args.width, "threshold": threshold, "training": summary}, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
