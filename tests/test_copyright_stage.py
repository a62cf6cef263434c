"""CopyrightStage on records, the shipped visible-mark classifier, and the mark synthesis."""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dedupkit.copyright import synthetic_marks
from dedupkit.copyright.embed_metadata import save_with_rights, xmp_packet
from dedupkit.copyright.stage import COPYRIGHT_COLUMNS, CopyrightStage, copyright_drop_reason
from dedupkit.copyright.visible_marks import DEFAULT_HEAD_PATH, VisibleMarkScorer
from dedupkit.decode import decode_record
from dedupkit.records import Record

DATA = Path(__file__).parent / "data" / "copyright"
ROOT = Path(__file__).parent.parent


def record(key: str, data: bytes, **fields) -> Record:
    return decode_record(Record(key=key, source="test", data=data, **fields))


@pytest.fixture(scope="module")
def photo():
    rng = random.Random(3)
    image, _ = synthetic_marks.clean_image(rng, "holdout", size=192)
    return image


def run(stage: CopyrightStage, records: list[Record]) -> dict[str, Record]:
    out = list(stage(iter(records)))
    assert [r.key for r in out] == [r.key for r in records]  # every record, in order
    return {r.key: r for r in out}


def test_metadata_only_stage_policy(photo):
    records = [
        record("exif", (DATA / "broken_exif_dpi.jpg").read_bytes()),
        record("creators", (DATA / "invalid-exif-without-x-resolution.jpg").read_bytes()),
        record("dmi", save_with_rights(photo, "JPEG", xmp=xmp_packet(data_mining="DMI-PROHIBITED-GENAIMLTRAINING"))),
        record("noai", save_with_rights(photo, "JPEG"), metadata={"headers": {"X-Robots-Tag": "noai"}}),
        record("caption", save_with_rights(photo, "JPEG"), caption="Sunset © 2019 Jane Doe"),
        record("url", save_with_rights(photo, "PNG"), url="https://c8.alamy.com/comp/x.jpg"),
        record("clean", save_with_rights(photo, "WEBP"), caption="a sunset over the sea"),
        record("bad-xmp", save_with_rights(photo, "JPEG", xmp="<x:xmpmeta><rdf:RDF>")),
        record("unreadable", b"not an image"),
    ]
    out = run(CopyrightStage(visible_marks=False), records)
    columns = {key: r.columns for key, r in out.items()}
    assert out["unreadable"].status == "skipped" and columns["unreadable"] == {}
    for key, values in columns.items():
        if key != "unreadable":
            assert set(values) == set(COPYRIGHT_COLUMNS) and values["visible_mark_score"] is None
    assert columns["exif"]["copyright_marked"] and columns["exif"]["rights_holder"] == "Ross_Pushinaitis"
    assert json.loads(columns["exif"]["copyright_evidence"])[0] == {
        "field": "exif:Copyright", "value": "Ross_Pushinaitis", "marks": True}
    assert copyright_drop_reason(columns["exif"]) == "copyright-marked: exif:Copyright=Ross_Pushinaitis"
    assert copyright_drop_reason(columns["creators"]) is None
    assert not columns["creators"]["copyright_marked"] and columns["creators"]["rights_holder"] == "JOE STEMMER PHOTO"
    assert columns["dmi"]["training_prohibited"] and columns["dmi"]["copyright_marked"]
    assert columns["noai"]["training_prohibited"]
    assert columns["caption"]["copyright_marked"] and columns["caption"]["rights_holder"] == "Jane Doe"
    assert columns["url"]["copyright_marked"] and columns["url"]["rights_holder"] == "Alamy"
    assert columns["clean"] == {"copyright_marked": False, "training_prohibited": False, "rights_holder": None,
                                "copyright_evidence": None, "visible_mark_score": None, "copyright_notes": None}
    assert "XMP malformed" in columns["bad-xmp"]["copyright_notes"] and not columns["bad-xmp"]["copyright_marked"]


def test_dropped_records_pass_untouched(photo):
    dropped = record("dropped", save_with_rights(photo, "JPEG", exif_copyright="© X")).drop("duplicate")
    out = run(CopyrightStage(visible_marks=False), [dropped])
    assert out["dropped"].columns == {}


def test_stage_pickles_without_its_model():
    stage = CopyrightStage(visible_marks=True)
    clone = pickle.loads(pickle.dumps(stage))
    assert clone._scorer is None and clone.visible_marks


@pytest.fixture(scope="module")
def scorer() -> VisibleMarkScorer:
    assert DEFAULT_HEAD_PATH.exists(), "the visible-mark head must ship with the package"
    assert DEFAULT_HEAD_PATH.stat().st_size < 3_000_000
    return VisibleMarkScorer()


def test_shipped_head_scores_held_out_marks_above_clean(scorer):
    rng = random.Random(11)
    clean, marked = [], []
    for _ in range(8):
        image, _ = synthetic_marks.clean_image(rng, "holdout", size=256)
        clean.append(image)
        marked.append(synthetic_marks.draw_visible_mark(random.Random(len(marked)), image, "holdout")[0])
    clean_scores, marked_scores = scorer.score(clean), scorer.score(marked)
    assert clean_scores.shape == (8,) and np.all((clean_scores >= 0) & (clean_scores <= 1))
    # Some random marks are faint or small; on average the marked copies must still stand out.
    assert marked_scores.mean() > clean_scores.mean() + 0.2
    assert (marked_scores >= scorer.threshold).sum() > (clean_scores >= scorer.threshold).sum()


def test_stage_with_visible_marks_scores_and_marks(scorer, photo):
    rng = random.Random(5)
    stamped, _ = synthetic_marks.draw_visible_mark(rng, photo, "holdout")
    records = [record("clean", save_with_rights(photo, "PNG")), record("stamped", save_with_rights(stamped, "PNG")),
               Record(key="no-pixels", source="test", data=save_with_rights(photo, "PNG"))]
    stage = CopyrightStage(visible_marks=True)
    stage._scorer = scorer
    out = run(stage, records)
    clean, marked = out["clean"].columns, out["stamped"].columns
    assert marked["visible_mark_score"] > clean["visible_mark_score"]
    assert not marked["copyright_marked"]  # by default the score is reported, never marks alone
    assert "visible marks not scored" in out["no-pixels"].columns["copyright_notes"]

    opted_in = CopyrightStage(visible_marks=True, visible_mark_threshold=marked["visible_mark_score"])
    opted_in._scorer = scorer
    out = run(opted_in, [record("stamped", save_with_rights(stamped, "PNG"))])
    assert out["stamped"].columns["copyright_marked"]
    assert json.loads(out["stamped"].columns["copyright_evidence"])[-1]["field"] == "visible:mark_score"


def test_holdout_sources_and_fonts_are_disjoint_from_training():
    for kind in ("photo", "drawing", "fashion"):
        train = {s.source_id for s in synthetic_marks.sources(kind, "train")}
        holdout = {s.source_id for s in synthetic_marks.sources(kind, "holdout")}
        assert not train & holdout
    assert not set(synthetic_marks.font_split("train")) & set(synthetic_marks.font_split("holdout"))


def test_mark_synthesis_is_deterministic_and_changes_pixels():
    first = synthetic_marks.labelled_sample(random.Random(7), "train", marked=True)
    again = synthetic_marks.labelled_sample(random.Random(7), "train", marked=True)
    clean = synthetic_marks.labelled_sample(random.Random(7), "train", marked=False)
    assert first[1] == 1 and clean[1] == 0 and first[2] == again[2]
    assert np.array_equal(np.asarray(first[0]), np.asarray(again[0]))
    assert first[0].size == clean[0].size and not np.array_equal(np.asarray(first[0]), np.asarray(clean[0]))


def test_training_mix_weights_styles_draws_hard_negatives_and_degrades():
    rng = random.Random(3)
    image, source_id = synthetic_marks.clean_image(rng, "train", size=160, hard_negative_share=1.0)
    assert source_id.lower().startswith(synthetic_marks.TEXT_AND_PATTERN_PHOTOS)
    assert {synthetic_marks.draw_visible_mark(rng, image, "train", {"logo": 1.0})[1] for _ in range(3)} == {"logo"}
    degraded = synthetic_marks.degrade(rng, image, jpeg_share=1.0, resize_share=1.0)
    assert degraded.mode == "RGB" and degraded.width < image.width


def test_heads_checkpoint_one_or_several_heads_average_logits():
    import torch

    from dedupkit.copyright.visible_marks import MarkHead, load_heads

    torch.manual_seed(0)
    heads = [MarkHead(width=8).eval() for _ in range(2)]
    maps = (torch.randn(3, 40, 8, 8), torch.randn(3, 112, 4, 4), torch.randn(3, 320, 2, 2))
    single = load_heads({"state_dict": heads[0].state_dict(), "width": 8})
    pair = load_heads({"state_dicts": [head.state_dict() for head in heads], "width": 8})
    with torch.no_grad():
        first, second = heads[0](*maps), heads[1](*maps)
        assert torch.allclose(single(*maps), first)
        assert torch.allclose(pair(*maps), (first + second) / 2) and not torch.allclose(first, second)


def test_document_pages_are_dense_ordinary_text_and_take_marks():
    page, source_id = synthetic_marks.document_image(random.Random(4), "train")
    again, _ = synthetic_marks.document_image(random.Random(4), "train")
    assert source_id.startswith("document:") and Path(source_id.split(":", 1)[1]).name in {
        Path(font).name for font in synthetic_marks.font_split("train")}
    assert np.array_equal(np.asarray(page), np.asarray(again))
    ink = (np.asarray(page.convert("L")) < 128).mean(axis=1)
    assert (ink > 0).mean() > 0.3  # text spread over the page, not one credit line
    assert not {"copyright", "photo", "licensed", "sample"} & set(synthetic_marks._PROSE)
    marked, _ = synthetic_marks.draw_visible_mark(random.Random(5), page, "train")
    assert marked.size == page.size and not np.array_equal(np.asarray(marked), np.asarray(page))


@pytest.mark.slow
def test_training_script_writes_a_loadable_head(tmp_path):
    out = tmp_path / "head.pt"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "train_visible_mark_classifier.py"),
                    "--train-samples", "32", "--val-samples", "32", "--document-samples", "16",
                    "--val-document-samples", "16", "--epochs", "3",
                    "--cache-dir", str(tmp_path), "--out", str(out)], check=True, cwd=ROOT)
    trained = VisibleMarkScorer(out)
    image, _ = synthetic_marks.clean_image(random.Random(1), "holdout", size=128)
    assert 0.0 <= float(trained.score([image])[0]) <= 1.0 and 0 <= trained.threshold <= 1


def test_clip_zero_shot_score_with_local_random_checkpoint(tmp_path, scorer, photo):
    import open_clip
    import torch
    from test_embedders import TINY_CLIP, TINY_CLIP_CONFIG

    config = tmp_path / f"{TINY_CLIP}.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model, _, _ = open_clip.create_model_and_transforms(TINY_CLIP)
    checkpoint = tmp_path / "tiny-random.pt"
    torch.save(model.state_dict(), checkpoint)

    stage = CopyrightStage(clip_model=TINY_CLIP, clip_pretrained=str(checkpoint))
    stage._scorer = scorer
    out = run(stage, [record("a", save_with_rights(photo, "PNG"))])
    clip_score = out["a"].columns["visible_mark_clip_score"]
    assert 0.0 <= clip_score <= 1.0

    missing = CopyrightStage(clip_model=TINY_CLIP, clip_pretrained=str(tmp_path / "absent.pt"))
    missing._scorer = scorer
    out = run(missing, [record("b", save_with_rights(photo, "PNG"))])
    assert out["b"].columns["visible_mark_clip_score"] is None
    assert out["b"].columns["visible_mark_score"] is not None
