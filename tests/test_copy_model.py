"""The learned copy verifier: stored trees score as scikit-learn does, and a wrong or missing file says so."""

import json

import numpy as np
import pytest

from dedupkit.search.copy_model import (
    DEFAULT_MODEL_PATH,
    FEATURE_NAMES,
    CopyModel,
    aligned_hue_conflict,
    save_copy_model,
)


def test_stored_trees_score_exactly_as_scikit_learn(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    features = rng.normal(size=(600, len(FEATURE_NAMES)))
    features[:, 5] = rng.integers(0, 4, 600)  # a column of few values, as counts are
    label = (features[:, 0] + features[:, 3] * features[:, 5] + 0.3 * rng.normal(size=600)) > 0.5
    classifier = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=15, random_state=0).fit(features, label)
    path = tmp_path / "trees.npz"
    save_copy_model(classifier, path, {"note": "test"})
    model = CopyModel(path)
    unseen = rng.normal(size=(200, len(FEATURE_NAMES)))
    assert np.allclose(model.score(unseen), classifier.predict_proba(unseen)[:, 1], atol=1e-12)
    assert model.provenance == {"note": "test"}
    assert model.score(unseen[0]).shape == (1,)


def test_shipped_verifier_loads_and_says_how_it_was_trained():
    model = CopyModel(DEFAULT_MODEL_PATH)
    assert DEFAULT_MODEL_PATH.stat().st_size < 1_000_000
    assert model.provenance["script"] == "scripts/train_copy_verifier.py"
    assert model.provenance["garments"]["split"] == "train"  # the benchmark counts test garments
    scores = model.score(np.zeros((3, len(FEATURE_NAMES))))
    assert np.all((scores >= 0) & (scores <= 1))


def test_missing_or_foreign_trees_fail_with_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="scripts/train_copy_verifier.py"):
        CopyModel(tmp_path / "absent.npz")
    with np.load(DEFAULT_MODEL_PATH) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["feature_names"] = np.array(json.dumps(list(FEATURE_NAMES[:-1])))
    np.savez(tmp_path / "older.npz", **arrays)
    with pytest.raises(RuntimeError, match="reads other measurements"):
        CopyModel(tmp_path / "older.npz")


def test_colour_veto_reads_the_orientation_that_aligns_the_pair():
    def pair(**values):
        row = np.zeros(len(FEATURE_NAMES))
        for name, value in values.items():
            row[FEATURE_NAMES.index(name)] = value
        return row

    mirrored_recolouring = pair(inliers=12, hue_conflict=0.0, mirror_inliers=66, mirror_hue_conflict=0.46)
    recoloured_copy = pair(inliers=120, hue_conflict=0.01, mirror_inliers=10, mirror_hue_conflict=0.5)
    plain_pair = pair(frame_hue_conflict=0.3, mirror_frame_hue_conflict=0.02)
    assert np.allclose(aligned_hue_conflict(np.stack([mirrored_recolouring, recoloured_copy, plain_pair])), [0.46, 0.01, 0.02])
