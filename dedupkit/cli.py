"""`dedupkit` command line: thin shells over the library, with progress and a summary."""

from __future__ import annotations

import functools
import inspect
import sys
import time
import typing
from dataclasses import make_dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dedupkit.decode import DecodeLimits
from dedupkit.search.options import KEEP_POLICIES, DedupOptions
from dedupkit.sources import SourceError, SourceOptions
from dedupkit.sources.parquet import ParquetColumns
from dedupkit.signatures.hashes import HASH_KINDS

# The heavy parts (torch, FAISS, numba) load inside the commands that need them, so
# `dedupkit --help` and argument errors answer at once.

app = typer.Typer(
    help=(
        "Clean image training datasets before a generative model learns to copy them: "
        "stream any dataset, drop exact and near duplicates, account for every record."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
console = Console(stderr=True)
out_console = Console()

SRC_HELP = (
    "The dataset: a folder of images (recursive), WebDataset .tar shards (a file, a folder, "
    "or a brace/glob pattern such as 'shards/{00000..00009}.tar'), Parquet files with image "
    "bytes (a file, folder or pattern), or hf:NAME_OR_PATH[:split] for a Hugging Face dataset."
)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


class _RichProgress:
    """Draws one bar per pass, in records per second."""

    def __init__(self):
        self.bar = Progress(
            TextColumn("[bold]{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} records/s"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = None
        self.started = time.perf_counter()

    def start_phase(self, phase: str, total_units: int) -> None:
        if self.task is not None:
            finished = self.bar.tasks[self.task]
            self.bar.update(self.task, total=finished.completed or 1, completed=finished.completed or 1)
        if phase == "decide":
            self.task = self.bar.add_task("decide", total=1, rate="-")
            return
        self.task = self.bar.add_task(phase, total=None, rate="-")
        self.started = time.perf_counter()

    def advance(self, count: int) -> None:
        if self.task is None or not count:
            return
        self.bar.advance(self.task, count)
        done = self.bar.tasks[self.task].completed
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        self.bar.update(self.task, rate=f"{done / elapsed:,.0f}")

    def as_callbacks(self):
        from dedupkit.pipeline import Progress as PipelineProgress

        return PipelineProgress(start_phase=self.start_phase, advance=self.advance)


def _print_summary(summary: dict, out: Path) -> None:
    table = Table(title=f"dedupkit: {summary['records']:,} records from {summary['source']}", show_header=True)
    table.add_column("outcome")
    table.add_column("records", justify="right")
    table.add_column("share", justify="right")
    total = max(summary["records"], 1)
    for label in ("kept", "dropped", "skipped"):
        table.add_row(label, f"{summary[label]:,}", f"{100 * summary[label] / total:.1f} %")
    for kind, count in summary["dropped_by_kind"].items():
        table.add_row(f"  dropped: {kind} duplicate", f"{count:,}", "")
    for reason, count in summary["skipped_by_reason"].items():
        table.add_row(f"  skipped: {reason}", f"{count:,}", "")
    out_console.print(table)
    timings = summary["timings"]
    out_console.print(
        f"{summary['records_per_second']:,} records/s overall ({timings['total_s']:.1f} s); "
        f"manifest: {out / 'manifest.parquet'}"
        + (f"; cleaned {summary['output_format']} data: {out / 'data'}" if summary["output_format"] else ""),
        highlight=False,
    )


def _run(src: str, out: Path, options, reading: "_Reading") -> None:
    from dedupkit.pipeline import RunError, run_clean

    progress = _RichProgress()
    try:
        with progress.bar:
            summary = run_clean(src, out, options, progress.as_callbacks(), overwrite=reading.overwrite)
    except (SourceError, RunError) as exc:
        _fail(str(exc))
    _print_summary(summary, out)


_DEFAULT_DEDUP = DedupOptions()


def _dedup_options(
    *, hashes: list[str], flip: bool, embedder: str, min_similarity: float, keep: str, verify_local: bool,
    candidate_similarity: float, min_copy_score: float, min_keeper_score: float, min_inliers: int, max_hue_conflict: float,
    min_frame_appearance: float, min_aligned_appearance: float, max_candidates_per_record: int, exact_only: bool,
) -> DedupOptions | None:
    if exact_only:
        return None
    radius = []
    for spec in hashes:
        if spec.lower() == "none":
            continue
        kind, _, bits = spec.partition(":")
        if kind not in HASH_KINDS or not bits.isdigit() or not 0 <= int(bits) <= 64:
            _fail(f"--hash {spec!r}: use KIND:BITS with KIND one of {', '.join(HASH_KINDS)} and BITS in 0..64, e.g. phash:8")
        radius.append((kind, int(bits)))
    if keep not in KEEP_POLICIES:
        _fail(f"--keep {keep!r}: use one of {', '.join(KEEP_POLICIES)}")
    if not -1 <= min_similarity <= 1:
        _fail("--min-similarity must lie in [-1, 1]")
    if max_candidates_per_record < 1:
        _fail("--max-candidates must be at least 1")
    return DedupOptions(
        hash_radius=tuple(radius),
        flip=flip,
        embedder=None if embedder.lower() == "none" else embedder,
        min_similarity=min_similarity,
        keep=keep,
        verify_local=verify_local,
        candidate_similarity=candidate_similarity,
        min_copy_score=None if min_copy_score > 1 else min_copy_score,
        min_keeper_score=min_keeper_score,
        min_inliers=min_inliers,
        max_hue_conflict=max_hue_conflict,
        min_frame_appearance=None if min_frame_appearance > 1 else min_frame_appearance,
        min_aligned_appearance=None if min_aligned_appearance > 1 else min_aligned_appearance,
        max_candidates_per_record=max_candidates_per_record,
    )


def _copyright_settings(policy: str, visible_marks: bool, visible_mark_threshold: float | None) -> dict:
    if policy not in COPYRIGHT_POLICIES:
        _fail(f"--copyright {policy!r}: use one of {', '.join(COPYRIGHT_POLICIES)}")
    if visible_mark_threshold is not None:
        if not 0 <= visible_mark_threshold <= 1:
            _fail(f"--visible-mark-threshold {visible_mark_threshold}: a score between 0 and 1")
        if not visible_marks:
            _fail("--visible-mark-threshold needs the visible-mark score: drop --no-visible-marks")
    return {"copyright": None if policy == "off" else policy, "visible_marks": visible_marks,
            "visible_mark_threshold": visible_mark_threshold}


def _watermark_settings(method: str, key: str | None) -> dict:
    from_choices = ("auto", "stdmDct", "dwtDct", "dwtDctSvd", "rivaGan", "none")
    if method not in from_choices:
        _fail(f"--watermark {method!r}: use one of {', '.join(from_choices)}")
    return {"watermark_method": None if method == "none" else method, "watermark_key": key}


def _options(reading: "_Reading", output_format=None, dedup=None, write_output=True, **stages):
    from dedupkit.pipeline import CleanOptions

    if reading.workers < 1:
        _fail("--workers must be at least 1")
    if reading.shard_size < 1:
        _fail("--shard-size must be at least 1")
    return CleanOptions(
        output_format=output_format,
        shard_size=reading.shard_size,
        workers=reading.workers,
        write_output=write_output,
        dedup=dedup,
        **stages,
        limits=DecodeLimits(min_side=reading.min_side, max_pixels=reading.max_pixels),
        source=SourceOptions(
            files_per_unit=reading.shard_size,
            columns=ParquetColumns(
                image=reading.image_column, caption=reading.caption_column, url=reading.url_column, key=reading.key_column
            ),
        ),
    )


_READING_OPTIONS = {
    "shard_size": (int, typer.Option(1000, "--shard-size", help="Records per output shard (and per folder work unit).")),
    "workers": (int, typer.Option(1, "--workers", "-w", help=(
        "Worker processes: each takes whole input shards; deciding shares the candidate pairs to verify among them."))),
    "min_side": (int, typer.Option(16, "--min-side", help="Skip images whose shorter side is below this many pixels.")),
    "max_pixels": (int, typer.Option(
        DecodeLimits().max_pixels, "--max-pixels", help="Skip images whose header declares more pixels (decompression bombs)."
    )),
    "image_column": (Optional[str], typer.Option(None, "--image-column", help="Parquet / hf: the image column (default: detected).")),
    "caption_column": (Optional[str], typer.Option(
        None, "--caption-column", help="Parquet / hf: the caption column (default: detected)."
    )),
    "url_column": (Optional[str], typer.Option(None, "--url-column", help="Parquet / hf: the source URL column (default: detected).")),
    "key_column": (Optional[str], typer.Option(None, "--key-column", help="Parquet / hf: the record key column (default: detected).")),
    "overwrite": (bool, typer.Option(False, "--overwrite", help="Delete what OUT holds and start over instead of resuming.")),
}


def _shared_options(parameter: str, table: dict, build):
    """Decorator: add `table`'s options {name: (type, typer.Option)} to a command, which
    receives `build(**their values)` as its `parameter` argument.

    Typer builds options from the signature, so the wrapper's signature is the
    command's own parameters followed by the shared ones.
    """

    def decorate(command):
        own = [p for name, p in inspect.signature(command).parameters.items() if name != parameter]
        shared = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
            for name, (kind, option) in table.items()
        ]

        @functools.wraps(command)
        def with_shared(**arguments):
            built = build(**{name: arguments.pop(name) for name in table})
            return command(**{parameter: built}, **arguments)

        with_shared.__signature__ = inspect.Signature(own + shared)
        with_shared.__annotations__ = typing.get_type_hints(command) | {name: kind for name, (kind, _) in table.items()}
        return with_shared

    return decorate


# Options of every command that reads a dataset, as one value (fields: the table's names).
_Reading = make_dataclass("_Reading", [(name, kind) for name, (kind, _) in _READING_OPTIONS.items()], frozen=True)
_reads_a_dataset = _shared_options("reading", _READING_OPTIONS, _Reading)


FullDecodeOption = typer.Option(
    False,
    "--full-decode",
    help="Analyse every pixel of JPEGs instead of a reduced-scale decode sized for the enabled signatures "
    "(slower on large photos; perceptual hashes then equal imagededup's bit for bit).",
)
_DEDUP_OPTIONS = {
    "hashes": (list[str], typer.Option(
        [f"{kind}:{bits}" for kind, bits in _DEFAULT_DEDUP.hash_radius],
        "--hash",
        help="Perceptual hash and Hamming radius (of 64 bits) for near duplicates, KIND:BITS; repeat for several "
        f"(kinds: {', '.join(HASH_KINDS)}), or none.",
    )),
    "flip": (bool, typer.Option(_DEFAULT_DEDUP.flip, "--flip/--no-flip", help="Also catch mirrored copies.")),
    "embedder": (str, typer.Option(
        _DEFAULT_DEDUP.embedder,
        "--embedder",
        help="Embedding model for near duplicates a hash misses: efficientnet-lite0 (offline default), "
        "open_clip:MODEL:TAG_OR_CHECKPOINT (weights from the Hugging Face cache or a local file), or none.",
    )),
    "min_similarity": (float, typer.Option(
        _DEFAULT_DEDUP.min_similarity, "--min-similarity", help="Embedding cosine similarity at or above which images are copies."
    )),
    "keep": (str, typer.Option(
        _DEFAULT_DEDUP.keep, "--keep", help=f"Which member of a duplicate cluster is kept: {', '.join(KEEP_POLICIES)} "
        "(largest: most pixels, then a PNG or other lossless file before a JPEG of the same size, then input order)."
    )),
    "verify_local": (bool, typer.Option(
        _DEFAULT_DEDUP.verify_local,
        "--verify-local/--no-verify-local",
        help="Confirm looser embedding candidates with local features (ORB keypoints in one geometric transform, "
        "mirrored too with --flip; grey and colour thumbnails that agree), weighed by the learned copy verifier "
        "(--min-copy-score): catches crops, flips, padding, rotations and overlays.",
    )),
    "candidate_similarity": (float, typer.Option(
        _DEFAULT_DEDUP.candidate_similarity, "--candidate-similarity", help="With --verify-local: embedding cosine from which pairs are checked."
    )),
    "min_copy_score": (float, typer.Option(
        _DEFAULT_DEDUP.min_copy_score,
        "--min-copy-score",
        help="With --verify-local: a candidate is a copy when the learned copy verifier (trees over all its keypoint and "
        "thumbnail measurements and the cosine) scores it at this or more, 0..1, and its colours do not conflict "
        "(--max-hue-conflict); above 1 verifies by the thresholds (--min-inliers, --min-frame-appearance) instead.",
    )),
    "min_keeper_score": (float, typer.Option(
        _DEFAULT_DEDUP.min_keeper_score,
        "--min-keeper-score",
        help="With the learned verifier: a record paired only with a copy of a cluster's keeper is dropped when the "
        "verifier scores it against the keeper itself at this or more (the lower of this and --min-copy-score): "
        "a crop of the original meets a padded keeper with two edits between them.",
    )),
    "min_inliers": (int, typer.Option(
        _DEFAULT_DEDUP.min_inliers, "--min-inliers",
        help="With --verify-local: keypoint matches one transform must explain (hash pairs; every candidate with "
        "--min-copy-score above 1)."
    )),
    "max_hue_conflict": (float, typer.Option(
        _DEFAULT_DEDUP.max_hue_conflict,
        "--max-hue-conflict",
        help="With --verify-local: share of the aligned overlap where both images are coloured with hues over 90 "
        "degrees apart above which a pair is not a copy (a recoloured look-alike); 1 turns the check off.",
    )),
    "min_frame_appearance": (float, typer.Option(
        _DEFAULT_DEDUP.min_frame_appearance,
        "--min-frame-appearance",
        help="With --verify-local: a candidate too small or plain for keypoints is a copy when it has the other's "
        "shape and their grey thumbnails, one scaled onto the other, correlate at this or more; above 1 turns it off.",
    )),
    "min_aligned_appearance": (float, typer.Option(
        _DEFAULT_DEDUP.min_aligned_appearance,
        "--min-aligned-appearance",
        help="With --verify-local: a candidate the verifier rejects is still a copy when their grey thumbnails, "
        "aligned by themselves without keypoints (a flat picture cropped, padded or turned), correlate at this or more "
        "(and in every part); above 1 turns it off.",
    )),
    "max_candidates_per_record": (int, typer.Option(
        _DEFAULT_DEDUP.max_candidates_per_record,
        "--max-candidates",
        help="With --verify-local: each record's nearest embedding candidates checked, at most.",
    )),
    "exact_only": (bool, typer.Option(
        False, "--exact-only", help="Drop exact duplicates only (identical pixels); no near-duplicate search."
    )),
}
_decides_duplicates = _shared_options("duplicates", _DEDUP_OPTIONS, _dedup_options)
COPYRIGHT_POLICIES = ("tag", "drop", "prefer-unmarked", "off")
CopyrightOption = typer.Option(
    "tag",
    "--copyright",
    help="Copyright-marked images (rights metadata, no-AI reservations, captions, stock URLs, visible marks): "
    "tag (manifest columns only), drop, prefer-unmarked (an unmarked copy is the cluster's keeper), or off.",
)
VisibleMarksOption = typer.Option(
    True, "--visible-marks/--no-visible-marks", help="Score visible marks (logos, stock watermarks) with the shipped classifier."
)
VisibleMarkThresholdOption = typer.Option(
    None,
    "--visible-mark-threshold",
    help="Score (0..1) at or above which a visible mark alone marks an image, so that --copyright drop and "
    "prefer-unmarked act on it; default: the score is only reported. About 0.987 gives ~2 % false positives and "
    "0.82 recall on the benchmark's held-out images.",
)
WatermarkMethodOption = typer.Option(
    "auto",
    "--watermark",
    help="Invisible watermark in every kept image: auto (stdmDct, from 32 px up), stdmDct, dwtDct, dwtDctSvd, "
    "rivaGan, or none. The payload traces an image to this dataset and record (OUT/watermarks.parquet).",
)
KeyOption = typer.Option(
    None, "--key", help="Watermark key (hex or passphrase); default: OUT/watermark.key, generated on the first run."
)


@app.command()
@_reads_a_dataset
@_decides_duplicates
def clean(
    src: str = typer.Argument(..., help=SRC_HELP),
    out: Path = typer.Argument(..., help="Output folder: data/, manifest.parquet, summary.json. A rerun resumes."),
    output_format: Optional[str] = typer.Option(
        None, "--format", "-f", help="Output format: folder, webdataset or parquet (default: the source's)."
    ),
    full_decode: bool = FullDecodeOption,
    copyright: str = CopyrightOption,
    visible_marks: bool = VisibleMarksOption,
    visible_mark_threshold: Optional[float] = VisibleMarkThresholdOption,
    watermark: str = WatermarkMethodOption,
    key: Optional[str] = KeyOption,
    reading: _Reading = None,
    duplicates: Optional[DedupOptions] = None,
) -> None:
    """Stream SRC, drop duplicates, tag copyright, watermark the kept records into OUT/data; account for every record.

    OUT/manifest.parquet has one row per input record (kept, dropped with its keeper, or
    skipped with the reason); OUT/summary.json has the counts and timings. The source is
    never modified. Run the same command again after an interruption to resume.
    """
    options = _options(
        reading, output_format, duplicates,
        **_copyright_settings(copyright, visible_marks, visible_mark_threshold), **_watermark_settings(watermark, key),
        fast_decode=not full_decode,
    )
    _run(src, out, options, reading)


@app.command()
@_reads_a_dataset
@_decides_duplicates
def dedup(
    src: str = typer.Argument(..., help=SRC_HELP),
    out: Path = typer.Argument(..., help="Output folder for manifest.parquet, signatures/ and summary.json."),
    full_decode: bool = FullDecodeOption,
    visible_mark_threshold: Optional[float] = VisibleMarkThresholdOption,
    reading: _Reading = None,
    duplicates: Optional[DedupOptions] = None,
) -> None:
    """Decide duplicates only: write the manifest (who is a copy of whom), copy no images."""
    # Only the stages that decide duplicates: copyright tags only when the keeper policy needs them.
    prefer_unmarked = duplicates is not None and duplicates.keep == "prefer-unmarked"
    if visible_mark_threshold is not None and not prefer_unmarked:
        _fail("--visible-mark-threshold: dedup reads copyright marks only for --keep prefer-unmarked")
    copyright_settings = _copyright_settings("tag" if prefer_unmarked else "off", True, visible_mark_threshold)
    options = _options(
        reading, None, duplicates,
        write_output=False, **copyright_settings, watermark_method=None, fast_decode=not full_decode,
    )
    _run(src, out, options, reading)


@app.command()
@_reads_a_dataset
def tag(
    src: str = typer.Argument(..., help=SRC_HELP),
    out: Path = typer.Argument(..., help="Output folder for manifest.parquet (copyright columns) and summary.json."),
    full_decode: bool = FullDecodeOption,
    visible_marks: bool = VisibleMarksOption,
    visible_mark_threshold: Optional[float] = VisibleMarkThresholdOption,
    reading: _Reading = None,
) -> None:
    """Tag copyright-marked images only: manifest columns copyright_marked, training_prohibited, rights_holder, copyright_evidence, visible_mark_score. Nothing is dropped or copied."""
    options = _options(
        reading, None, None,
        write_output=False, find_duplicates=False, **_copyright_settings("tag", visible_marks, visible_mark_threshold),
        watermark_method=None, fast_decode=not full_decode,
    )
    _run(src, out, options, reading)


@app.command()
@_reads_a_dataset
def watermark(
    src: str = typer.Argument(..., help=SRC_HELP),
    out: Path = typer.Argument(..., help="Output folder: data/ (every readable image marked), watermarks.parquet, manifest.parquet."),
    output_format: Optional[str] = typer.Option(None, "--format", "-f", help="Output format: folder, webdataset or parquet (default: the source's)."),
    method: str = WatermarkMethodOption,
    key: Optional[str] = KeyOption,
    reading: _Reading = None,
) -> None:
    """Watermark every readable image of SRC into OUT/data (no deduplication); OUT/watermarks.parquet maps each payload to its record."""
    if method == "none":
        _fail("--watermark none makes nothing to do here; choose a method")
    options = _options(
        reading, output_format, None,
        find_duplicates=False, copyright=None, **_watermark_settings(method, key),
    )
    _run(src, out, options, reading)


@app.command()
def detect(
    images: list[Path] = typer.Argument(..., help="Images to check (files; folders are searched recursively)."),
    registry: Optional[Path] = typer.Option(
        None, "--registry", help="OUT/watermarks.parquet of a dedupkit run: traces a mark to its record."
    ),
    key: Optional[str] = typer.Option(
        None, "--key", help="Watermark key (hex or passphrase); default: the watermark.key beside the registry."
    ),
    method: Optional[str] = typer.Option(None, "--method", help="Only try this method (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """Check images for a dedupkit watermark: marked or not, method, false-alarm probability, bit accuracy, dataset match, and the record it traces to."""
    import json

    from dedupkit.watermark import WatermarkKeyError, detect_paths

    files = []
    for path in images:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.exists():
            files.append(path)
        else:
            _fail(f"{path}: no such file or folder")
    if registry is not None and not registry.is_file():
        _fail(f"{registry}: no such registry (expected OUT/watermarks.parquet of a dedupkit run)")
    try:
        detections = detect_paths(files, key=key, registry=registry, method=method)
    except WatermarkKeyError as exc:
        _fail(str(exc))
    if as_json:
        for detection in detections:
            print(json.dumps(detection.to_dict(), default=str))
        return
    table = Table(title=f"dedupkit detect: {sum(d.marked for d in detections)} of {len(detections)} marked")
    columns = list(detections[0].table_row()) if detections else ["image"]
    for column in columns:
        wide = column in ("image", "record")
        table.add_column(column.replace("_", " "), overflow="fold", no_wrap=not wide, ratio=3 if wide else None)
    for detection in detections:
        table.add_row(*detection.table_row().values())
    out_console.print(table)


def _records(spec: str):
    """Every readable record of a dataset spec, for training or reference sets (a dedupkit OUT reads its data/)."""
    from dedupkit.sources import open_source

    path = Path(spec)
    if (path / "manifest.parquet").exists() and (path / "data").is_dir():
        spec = str(path / "data")
    try:
        source = open_source(spec)
        units = source.units()
    except SourceError as exc:
        _fail(str(exc))
    for unit in units:
        yield from source.read(unit)


def _watermark_detector(cleaned: Optional[str]):
    """Detect marks of the cleaned run's key in generations, when the cleaned data was watermarked."""
    if cleaned is None or not (Path(cleaned) / "watermarks.parquet").exists():
        return None
    from dedupkit.watermark import detect_image

    registry = Path(cleaned) / "watermarks.parquet"

    def detector(image):
        detection = detect_image(image, registry=registry)
        return (detection.record_key or detection.record_index) if detection.marked else None

    return detector


@app.command()
def verify(
    out: Path = typer.Option(
        Path("verify"), "--out", "-o", help="Folder for report.json, report.html, checkpoints and generations; a rerun resumes training."
    ),
    raw: Optional[str] = typer.Option(None, "--raw", help="The raw training data (any SRC form)."),
    cleaned: Optional[str] = typer.Option(None, "--cleaned", help="The cleaned data: a dedupkit OUT folder (its data/) or any SRC."),
    generations: Optional[str] = typer.Option(None, "--generations", help="Images from an outside model to measure instead of training."),
    train: Optional[str] = typer.Option(None, "--train", help="With --generations: the training data they may copy."),
    holdout: Optional[str] = typer.Option(
        None, "--holdout", help="Real images of the same distribution never trained on: the control that calibrates the copy criterion."
    ),
    resolution: int = typer.Option(16, "--resolution", help="Model resolution (pixels a side)."),
    color: bool = typer.Option(False, "--color/--grayscale", help="RGB model instead of grayscale."),
    widths: str = typer.Option("32,64", "--widths", help="UNet block widths, comma separated."),
    attention: bool = typer.Option(False, "--attention/--no-attention", help="Self-attention in the lowest-resolution blocks."),
    steps: int = typer.Option(2500, "--steps", help="Training steps per arm."),
    batch_size: int = typer.Option(64, "--batch-size", help="Training batch size."),
    learning_rate: float = typer.Option(2e-3, "--lr", help="AdamW peak learning rate (warmup then cosine decay)."),
    seed: int = typer.Option(0, "--seed", help="Seed for training and sampling."),
    samples: int = typer.Option(500, "--samples", help="Generations sampled from each arm."),
    inference_steps: int = typer.Option(50, "--inference-steps", help="DDIM steps per generation."),
    max_distance: float = typer.Option(0.03, "--max-distance", help="A generation whose nearest training image is closer (normalized l2) is a copy."),
    criterion: str = typer.Option("absolute", "--criterion", help="absolute, relative (Carlini et al.: nearest / mean of 50 nearest < alpha) or both."),
    alpha: float = typer.Option(0.5, "--alpha", help="Relative criterion threshold."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: CUDA when present)."),
    embedder: str = typer.Option(
        "efficientnet-lite0", "--embedder", help="Embedding model for the second view (cosine to the nearest training image), or none."
    ),
) -> None:
    """Measure replication of training images: train the reference DDPM on --raw and --cleaned with the same budget and compare, or measure --generations of an outside model against --train. Writes report.json and report.html."""
    from dedupkit.verify import ModelConfig, ReplicationCriterion, TrainConfig, VerifyOptions, rich_progress
    from dedupkit.verify import verify_arms, verify_generations

    try:
        rule = ReplicationCriterion(mode=criterion, max_distance=max_distance, alpha=alpha)
    except ValueError as exc:
        _fail(str(exc))
    holdout_records = list(_records(holdout)) if holdout else None
    embed = None
    if embedder.lower() != "none":
        from dedupkit.pipeline import cached_embedder

        embed = cached_embedder(embedder).embed
    if generations is not None:
        if train is None or raw is not None or cleaned is not None:
            _fail("--generations needs --train (and takes no --raw/--cleaned)")
        report = verify_generations(
            list(_records(generations)), list(_records(train)), out, holdout=holdout_records, resolution=resolution,
            grayscale=not color, criterion=rule, embed=embed,
        )
    else:
        if raw is None or cleaned is None:
            _fail("give --raw SRC and --cleaned OUT (or --generations DIR --train SRC)")
        try:
            model = ModelConfig(
                resolution=resolution, channels=3 if color else 1, attention=attention,
                block_out_channels=tuple(int(w) for w in widths.split(",")),
            )
        except ValueError as exc:
            _fail(str(exc))
        options = VerifyOptions(
            model=model,
            train=TrainConfig(steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed, device=device),
            samples=samples, inference_steps=inference_steps, sample_seed=seed + 1, criterion=rule,
        )
        with rich_progress() as update:
            report = verify_arms(
                list(_records(raw)), list(_records(cleaned)), out, holdout=holdout_records, options=options,
                watermark_detector=_watermark_detector(cleaned), progress=update, embed=embed,
            )
    _print_verify_summary(report)
    out_console.print(f"report: {out / 'report.html'}", highlight=False)


def _print_verify_summary(report: dict) -> None:
    table = Table(title=f"replication of training images: {report['criterion']['description']}")
    for column in ("set", "generations", "copies", "rate (95 % CI)", "distinct images copied", "of them duplicated in raw"):
        table.add_column(column)
    rows = dict(report["arms"])
    if report.get("control"):
        rows["held-out real images (control)"] = report["control"]
    for name, arm in rows.items():
        rate = arm["replicated"]
        table.add_row(
            name,
            str(arm["generations"]),
            str(rate["count"]),
            f"{100 * rate['rate']:.1f} % ({100 * rate['low']:.1f}-{100 * rate['high']:.1f})",
            str(arm["distinct_groups_replicated"]),
            str(arm["distinct_groups_replicated_that_were_duplicated"]),
        )
    out_console.print(table)


@app.command()
def report(
    out: Path = typer.Argument(..., help="A folder written by `dedupkit clean` or `dedupkit dedup`."),
    page_size: int = typer.Option(50, "--page-size", help="Duplicate clusters per page."),
    thumb_px: int = typer.Option(160, "--thumb-px", help="Longer side of each thumbnail in pixels."),
    max_members: int = typer.Option(60, "--max-members", help="Thumbnails per cluster; the rest are counted."),
    workers: int = typer.Option(1, "--workers", "-w", help="Worker processes that make the thumbnails."),
) -> None:
    """Write OUT/report.html: duplicate clusters as thumbnails (keeper marked), the run's summary, skipped records."""
    from dedupkit.pipeline import RunError
    from dedupkit.report import write_cluster_report

    try:
        path = write_cluster_report(out, page_size=page_size, thumb_px=thumb_px, max_members=max_members, workers=workers)
    except RunError as exc:
        _fail(str(exc))
    out_console.print(f"report: {path}", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
