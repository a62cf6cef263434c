"""The learned copy verifier: gradient-boosted trees over a candidate pair's measurements.

`CopyCriteria` (dedupkit.signatures.local) holds each measurement of a pair to its own
bar: enough keypoint inliers, and a grey-thumbnail correlation of 0.95, and no colour
conflict.  A copy with a caption over a third of it, or rotated and recoloured at once,
fails one bar while everything else about it says "copy"; a look-alike drawing passes
most bars narrowly.  The verifier weighs all of `pair_measurements` together with the
embedding cosine, as scikit-learn's HistGradientBoostingClassifier trained by
scripts/train_copy_verifier.py on openclipart drawings that benchmarks/neardup_quality.py
never uses (with planted copies of the benchmark's kinds) and on Fashion-MNIST training
garments as look-alikes (the benchmark counts test garments).

The trees ship as plain arrays (`copy_verifier.npz`, about 0.1 MB) and are evaluated
here with numpy, a batch of pairs at a time, so deciding needs neither scikit-learn nor
pickles.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from dedupkit.signatures.local import MEASUREMENT_NAMES

FEATURE_NAMES = MEASUREMENT_NAMES + ("cosine",)
DEFAULT_MODEL_PATH = Path(__file__).with_name("copy_verifier.npz")
_NODE_FIELDS = ("feature", "threshold", "left", "right", "is_leaf", "value")


class CopyModel:
    """Scores candidate pairs 0..1 (the trees' probability that the pair is a copy)."""

    def __init__(self, path: str | Path = DEFAULT_MODEL_PATH) -> None:
        path = Path(path)
        if not path.exists():
            raise RuntimeError(f"copy verifier not found at {path}: run scripts/train_copy_verifier.py, "
                               "or set min_copy_score=None to verify by the thresholds alone")
        with np.load(path) as stored:
            names = tuple(json.loads(str(stored["feature_names"])))
            if names != FEATURE_NAMES:
                raise RuntimeError(f"the copy verifier at {path} reads other measurements than this version computes: "
                                   "retrain it with scripts/train_copy_verifier.py")
            self.feature, self.threshold, self.left, self.right, self.is_leaf, self.value = (
                stored[name] for name in _NODE_FIELDS)
            self.baseline = float(stored["baseline"])
            self.provenance = json.loads(str(stored["provenance"]))
        self._depth = stored_depth(self.left, self.right, self.is_leaf)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Probability of a copy for each row of `features` ((n, len(FEATURE_NAMES)))."""
        features = np.nan_to_num(np.asarray(features, dtype=np.float64).reshape(-1, len(FEATURE_NAMES)))
        trees = np.arange(self.feature.shape[0])
        node = np.zeros((features.shape[0], trees.size), dtype=np.int64)
        rows = np.arange(features.shape[0])[:, None]
        for _ in range(self._depth):
            leaf = self.is_leaf[trees, node]
            goes_left = features[rows, self.feature[trees, node]] <= self.threshold[trees, node]
            node = np.where(leaf, node, np.where(goes_left, self.left[trees, node], self.right[trees, node]))
        raw = self.baseline + self.value[trees, node].sum(axis=1)
        return 1.0 / (1.0 + np.exp(-raw))


def aligned_hue_conflict(features: np.ndarray) -> np.ndarray:
    """Each pair's hue conflict (see `CopyCriteria.max_hue_conflict`) where its keypoints align it:
    as is or mirrored, whichever fit explains more matches; the whole frames' (the lesser of as
    is and mirrored) when neither fits.

    The trees weigh colour like any other measurement, and their training copies are at most
    mildly recoloured, so the colour rule of the thresholds is kept as a veto on top: the same
    drawing with its balloon yellow instead of blue is not a copy, however well it aligns."""
    features = np.asarray(features).reshape(-1, len(FEATURE_NAMES))
    column = {name: features[:, FEATURE_NAMES.index(name)] for name in (
        "inliers", "mirror_inliers", "hue_conflict", "mirror_hue_conflict", "frame_hue_conflict",
        "mirror_frame_hue_conflict")}
    keypoints = np.where(column["inliers"] >= column["mirror_inliers"], column["hue_conflict"], column["mirror_hue_conflict"])
    frames = np.minimum(column["frame_hue_conflict"], column["mirror_frame_hue_conflict"])
    return np.where(np.maximum(column["inliers"], column["mirror_inliers"]) > 0, keypoints, frames)


@lru_cache(maxsize=4)
def load_copy_model(path: str | Path = DEFAULT_MODEL_PATH) -> CopyModel:
    return CopyModel(path)


def stored_depth(left: np.ndarray, right: np.ndarray, is_leaf: np.ndarray) -> int:
    """The longest root-to-leaf path over all trees (how many steps `score` must walk)."""
    deepest = 0
    for tree in range(left.shape[0]):
        stack = [(0, 0)]
        while stack:
            node, level = stack.pop()
            deepest = max(deepest, level)
            if not is_leaf[tree, node]:
                stack += [(int(left[tree, node]), level + 1), (int(right[tree, node]), level + 1)]
    return deepest


def save_copy_model(classifier, path: str | Path, provenance: dict) -> None:
    """Write a fitted binary HistGradientBoostingClassifier (numeric features, FEATURE_NAMES order) as arrays."""
    trees = [predictors[0].nodes for predictors in classifier._predictors]
    if any(tree["is_categorical"].any() for tree in trees):
        raise ValueError("the copy verifier's features are all numeric")
    width = max(len(tree) for tree in trees)
    arrays = {}
    for field, source, dtype in (("feature", "feature_idx", np.int64), ("threshold", "num_threshold", np.float64),
                                 ("left", "left", np.int64), ("right", "right", np.int64),
                                 ("is_leaf", "is_leaf", bool), ("value", "value", np.float64)):
        table = np.zeros((len(trees), width), dtype=dtype)
        for row, tree in enumerate(trees):
            table[row, :len(tree)] = tree[source]
        arrays[field] = table
    # Padding nodes are never reached; marking them leaves keeps the walk's lookups in range.
    for row, tree in enumerate(trees):
        arrays["is_leaf"][row, len(tree):] = True
    np.savez_compressed(path, **arrays, baseline=np.float64(np.ravel(classifier._baseline_prediction)[0]),
                        feature_names=json.dumps(list(FEATURE_NAMES)), provenance=json.dumps(provenance))
