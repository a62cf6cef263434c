"""Compose the stages into resumable passes and run them on one process or a pool.

    analyse (per unit, parallel)   source -> decode -> signatures  -> OUT/signatures/NNNNN.parquet
    decide  (global, one process)  all signature shards            -> OUT/.dedupkit/decisions.parquet
    write   (per unit, parallel)   source -> keep/drop -> sink     -> OUT/data/*, manifest part
    finish                         manifest parts                  -> OUT/manifest.parquet, summary.json

Every file is written under a temporary name and renamed when complete; a finished
unit is never redone, so a killed run resumes where it stopped and ends with the
same files as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dedupkit import __version__
from dedupkit.decode import DecodeLimits
from dedupkit.records import DROPPED, KEPT, SKIPPED, Record
from dedupkit.search.decide import decide_duplicates
from dedupkit.search.options import DedupOptions
from dedupkit.signatures.exact import DecodeStage
from dedupkit.signatures.hashes import HashStage
from dedupkit.sinks import OUTPUT_FORMATS, atomic_write_bytes, atomic_write_table, make_writer, remove_temporaries
from dedupkit.sinks.manifest import SIGNATURE_PREFIX, column_or_nones, concat, manifest_view, record_row, rows_to_table
from dedupkit.sources import Source, SourceOptions, Unit, open_source
from dedupkit.sources.base import UNIT_STRIDE
from dedupkit.sources.parquet import ParquetColumns

Stage = Callable[[Iterator[Record]], Iterator[Record]]

STATE_FOLDER = ".dedupkit"


class RunError(RuntimeError):
    """A problem with the run's settings or output folder; the message is one line for the user."""


@dataclass(frozen=True)
class CleanOptions:
    output_format: str | None = None
    """folder | webdataset | parquet; default: the source's own format (hf -> parquet)."""
    shard_size: int = 1000
    workers: int = 1
    """Processes: each analyses whole input shards; the decision shares its candidate pairs among them."""
    write_output: bool = True
    """False for `dedupkit dedup`: decide and write the manifest, copy no images."""
    limits: DecodeLimits = DecodeLimits()
    source: SourceOptions = SourceOptions()
    find_duplicates: bool = True
    """False for `dedupkit tag` / `watermark`: every readable record is kept."""
    dedup: DedupOptions | None = DedupOptions()
    """Near-duplicate signatures and thresholds; None for exact duplicates only."""
    copyright: str | None = "tag"
    """tag (columns only), drop (copyright-marked records dropped), prefer-unmarked, or None (off)."""
    visible_marks: bool = True
    """Score visible marks with the shipped classifier (part of copyright tagging)."""
    visible_mark_threshold: float | None = None
    """Score at or above which a visible mark alone marks a record (then `drop` and
    `prefer-unmarked` act on it); None only reports the score.  The measured operating
    points are in dedupkit.copyright.stage's notes."""
    fast_decode: bool = True
    """Analysis decodes JPEGs at a reduced scale just large enough for the enabled signatures
    (libjpeg draft mode, several times faster on large photos); False decodes every pixel,
    which makes the perceptual hashes equal imagededup's bit for bit.  Written images are
    always decoded in full."""
    watermark_method: str | None = "auto"
    """Invisible watermark for every kept record (auto, stdmDct, dwtDct, dwtDctSvd, rivaGan) or None."""
    watermark_key: str | None = None
    """Hex key; None uses OUT/watermark.key, created on the first run. Never written to run.json."""

    def fingerprint(self, source: Source, units: list[Unit]) -> dict:
        """What must match for a rerun to resume instead of starting over."""
        settings = dataclasses.asdict(self)
        settings.pop("workers")  # the result does not depend on the number of workers
        settings.pop("watermark_key")  # a secret; OUT/watermark.key guards against a changed key
        fingerprint = {
            "dedupkit": __version__,
            "source": _source_identity(source),
            "source_files": _source_files_stamp(source, units),
            "settings": settings,
        }
        if self.dedup is not None and self.dedup.embedder and self.dedup.verify_local:
            # Stored local features change with the code, not the settings: a run analysed before may not resume.
            from dedupkit.signatures.local import LAYOUT_MARK, SIGNATURE_REVISION

            fingerprint["local_features"] = f"{LAYOUT_MARK:x}.{SIGNATURE_REVISION}"
        return fingerprint


@dataclass
class Progress:
    """Callbacks the CLI uses to draw progress; the default draws nothing."""

    start_phase: Callable[[str, int], None] = lambda phase, total: None
    advance: Callable[[int], None] = lambda count: None


@dataclass
class RunPaths:
    out: Path

    @property
    def state(self) -> Path:
        return self.out / STATE_FOLDER

    @property
    def signatures(self) -> Path:
        return self.out / "signatures"

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def parts(self) -> Path:
        return self.state / "manifest-parts"

    @property
    def decisions(self) -> Path:
        return self.state / "decisions.parquet"

    @property
    def settings(self) -> Path:
        return self.state / "run.json"

    @property
    def manifest(self) -> Path:
        return self.out / "manifest.parquet"

    @property
    def summary(self) -> Path:
        return self.out / "summary.json"

    def signature_shard(self, unit: Unit) -> Path:
        return self.signatures / f"{unit.index:05d}.parquet"

    def manifest_part(self, unit: Unit) -> Path:
        return self.parts / f"{unit.index:05d}.parquet"


# ----------------------------------------------------------------------------- stages


# Pixels a side the perceptual hashes need before their own LANCZOS resize: at 128, 83 %
# of pHashes of real photos equal the full-decode hash and none differs by more than
# 6 bits (benchmarks/hash_throughput.py); wHash scales with the image, so it wants more.
HASH_DECODE_SIDE = 128
WHASH_DECODE_SIDE = 256


def analysis_stages(options: CleanOptions) -> list[Stage]:
    """Stages of the analysis pass, in order; each adds signatures or columns.

    The decode is sized for the most demanding enabled stage (`fast_decode`).
    """
    stages: list[Stage] = []
    sides = [0]
    if options.copyright:
        from dedupkit.copyright import CopyrightStage

        stages.append(CopyrightStage(visible_marks=options.visible_marks,
                                     visible_mark_threshold=options.visible_mark_threshold))
        if options.visible_marks:
            from dedupkit.copyright.visible_marks import INPUT_SIZE

            sides.append(INPUT_SIZE)
    dedup = options.dedup if options.find_duplicates else None
    if dedup is not None and dedup.hash_kinds:
        stages.append(HashStage(kinds=dedup.hash_kinds, flip=dedup.flip))
        sides.append(WHASH_DECODE_SIDE if "whash" in dedup.hash_kinds else HASH_DECODE_SIDE)
    if dedup is not None and dedup.embedder:
        from dedupkit.signatures.embedders import EmbeddingStage  # torch: only when embeddings are wanted

        embedder = cached_embedder(dedup.embedder)
        stages.append(EmbeddingStage(embedder))
        sides.append(math.ceil(embedder.image_size / embedder.crop_fraction))
        if dedup.verify_local:
            from dedupkit.signatures.local import THUMBNAIL_SIDE, LocalFeatureStage  # OpenCV: only when wanted

            stages.append(LocalFeatureStage())
            sides.append(THUMBNAIL_SIDE)
    # With no stage needing pixels (exact duplicates only) the decode stays full, so
    # "identical pixels" means every pixel.
    draft_side = max(sides) if options.fast_decode and max(sides) else None
    return [DecodeStage(options.limits, draft_side=draft_side)] + stages


@functools.lru_cache(maxsize=2)
def cached_embedder(spec: str):
    """One model per process, however many units it analyses."""
    from dedupkit.signatures.embedders import embedder_from_spec

    return embedder_from_spec(spec)


def output_stages(options: CleanOptions, paths: RunPaths, unit: Unit, record_index: dict[int, int]) -> list[Stage]:
    """Stages applied to kept records just before they are written (a second decode, for the watermark)."""
    if not options.watermark_method:
        return []
    from dedupkit.watermark import RegistryWriter, WatermarkStage

    registry = RegistryWriter(paths.out, shard=f"{unit.index:05d}")
    return [
        DecodeStage(options.limits),
        WatermarkStage(
            options.watermark_key, options.watermark_method, registry, index_of=lambda record: record_index[record.ordinal]
        ),
    ]


def ordinal_range(unit: Unit) -> tuple[int, int]:
    return unit.index * UNIT_STRIDE, (unit.index + 1) * UNIT_STRIDE


def run_stages(records: Iterable[Record], stages: list[Stage]) -> Iterator[Record]:
    stream: Iterator[Record] = iter(records)
    for stage in stages:
        stream = stage(stream)
    return stream


# ----------------------------------------------------------------------------- passes


def analyse_unit(source: Source, unit: Unit, options: CleanOptions, paths: RunPaths, tick=None) -> int:
    rows = []
    for record in run_stages(source.read(unit), analysis_stages(options)):
        record.release_pixels()
        rows.append(record_row(record))
        if tick:
            tick(1)
    atomic_write_table(paths.signature_shard(unit), rows_to_table(rows))
    return len(rows)


def decide(paths: RunPaths, units: list[Unit], options: CleanOptions) -> pa.Table:
    """The one global step: which records are duplicates of which keeper, and which are dropped for copyright.

    Also numbers every record densely in input order (`record_index`, its row in the
    manifest): the watermark payload carries it, the registry maps it back to the key.
    """
    dedup = options.dedup
    if dedup is not None and options.copyright == "prefer-unmarked":
        dedup = dataclasses.replace(dedup, keep="prefer-unmarked")
    if not options.find_duplicates:
        table = concat(_without_signatures(paths.signature_shard(u)) for u in units)
        verdicts = pa.table({"ordinal": table.column("ordinal"), "status": table.column("status"), "reason": table.column("reason")})
    else:
        with _analysis_for_decision(paths, units) as table:
            verdicts = decide_duplicates(table, dedup, workers=options.workers).as_table(table.column("ordinal"))
    if options.copyright == "drop":
        verdicts = _drop_copyright_marked(table, verdicts)
    return verdicts.append_column("record_index", pa.array(np.arange(table.num_rows), pa.int64()))


def _without_signatures(shard: Path) -> pa.Table:
    """An analysis shard's manifest columns: the signatures are most of its bytes."""
    return pq.read_table(shard, columns=[n for n in pq.read_schema(shard).names if not n.startswith(SIGNATURE_PREFIX)])


@contextlib.contextmanager
def _analysis_for_decision(paths: RunPaths, units: list[Unit]) -> Iterator[pa.Table]:
    """Every record's analysis row, for the one global step.

    The ORB signatures (~18 KiB a record: most of a shard's bytes; a million records hold
    ~18 GB) are copied shard by shard into an uncompressed Arrow file beside the run state
    and memory-mapped: the decision reads them one picture at a time, and the page cache,
    not the process, holds them.  The file is removed when the decision is made.
    """
    from dedupkit.signatures.local import SIGNATURE_NAME

    orb = SIGNATURE_PREFIX + SIGNATURE_NAME
    mapped = paths.state / "orb-signatures.arrow"
    tables, any_orb = [], False
    with pa.OSFile(str(mapped), "wb") as sink, pa.ipc.new_file(sink, pa.schema([(orb, pa.binary())])) as writer:
        for unit in units:
            shard = pq.read_table(paths.signature_shard(unit))
            if orb in shard.column_names:
                any_orb = True
                column = shard.column(orb).cast(pa.binary())
                shard = shard.drop_columns([orb])
            else:  # every record of the shard was skipped before the local features
                column = pa.nulls(shard.num_rows, pa.binary())
            writer.write_table(pa.table({orb: column}))
            tables.append(shard)
    table = concat(tables)
    try:
        if not any_orb:
            yield table
            return
        with pa.memory_map(str(mapped)) as source:
            yield table.append_column(orb, pa.ipc.open_file(source).read_all().column(orb))
    finally:
        mapped.unlink(missing_ok=True)


def _drop_copyright_marked(table: pa.Table, verdicts: pa.Table) -> pa.Table:
    """Kept records that carry copyright evidence are dropped, with the evidence as the reason.

    Copies of a marked keeper stay dropped as its duplicates: the whole cluster goes,
    since an unmarked copy of a marked picture is the same protected picture.
    """
    from dedupkit.copyright import copyright_drop_reason

    status = verdicts.column("status").to_pylist()
    reason = verdicts.column("reason").to_pylist()
    marked = table.column("copyright_marked").to_pylist()
    evidence = table.column("copyright_evidence").to_pylist()
    for row, (state, is_marked) in enumerate(zip(status, marked)):
        if state == KEPT and is_marked:
            status[row] = DROPPED
            reason[row] = copyright_drop_reason({"copyright_marked": True, "copyright_evidence": evidence[row]})
    verdicts = verdicts.set_column(verdicts.schema.get_field_index("status"), "status", pa.array(status, pa.string()))
    return verdicts.set_column(verdicts.schema.get_field_index("reason"), "reason", pa.array(reason, pa.string()))


def manifest_rows(analysis: pa.Table, decisions: pa.Table) -> pa.Table:
    """Analysis rows with the global decisions applied (decisions overwrite status and reason)."""
    left = manifest_view(analysis).drop_columns(["status", "reason"])
    joined = left.join(decisions, keys="ordinal", join_type="left outer")
    order = pa.compute.sort_indices(joined, sort_keys=[("ordinal", "ascending")])
    joined = joined.take(order)
    base = ["ordinal", "key", "source", "status", "reason", "sha256", "width", "height", "format"]
    rest = [n for n in joined.column_names if n not in base]
    return joined.select(base + rest)


def write_unit(
    source: Source, unit: Unit, options: CleanOptions, paths: RunPaths, output_format: str, tick=None
) -> int:
    analysis = pq.read_table(paths.signature_shard(unit))
    first, end = ordinal_range(unit)
    decisions = pq.read_table(paths.decisions, filters=[("ordinal", ">=", first), ("ordinal", "<", end)])
    rows = manifest_rows(analysis, decisions)
    expected = {row["ordinal"]: row for row in rows.select(["ordinal", "status", "sha256", "record_index"]).to_pylist()}
    record_index = {ordinal: row["record_index"] for ordinal, row in expected.items()}
    changed: dict[int, str] = {}
    extra_columns: dict[int, dict] = {}

    def kept_records() -> Iterator[Record]:
        for record in source.read(unit):
            if tick:
                tick(1)
            decided = expected.get(record.ordinal)
            if decided is None or decided["status"] != KEPT:
                continue
            if record.sha256 != decided["sha256"]:
                changed[record.ordinal] = "source changed during the run (bytes differ from the analysis pass)"
                continue
            yield record

    def finished(records: Iterator[Record]) -> Iterator[Record]:
        for record in records:
            if record.alive:
                extra_columns[record.ordinal] = dict(record.columns)
                record.release_pixels()
                yield record
            else:
                changed[record.ordinal] = record.reason

    stream = finished(run_stages(kept_records(), output_stages(options, paths, unit, record_index)))
    writer = make_writer(output_format, paths.data, options.shard_size)
    writer.write_unit(unit.index, stream)
    rows = _apply_write_outcomes(rows, changed, extra_columns)
    atomic_write_table(paths.manifest_part(unit), rows)
    return rows.num_rows


def _apply_write_outcomes(rows: pa.Table, changed: dict[int, str], extra: dict[int, dict]) -> pa.Table:
    if not changed and not any(extra.values()):
        return rows
    records = rows.to_pylist()
    for row in records:
        if row["ordinal"] in changed:
            row["status"], row["reason"] = SKIPPED, changed[row["ordinal"]]
        row.update(extra.get(row["ordinal"], {}))
    updated = rows_to_table(records)
    return updated.select(rows.column_names + [n for n in updated.column_names if n not in rows.column_names])


# ----------------------------------------------------------------------------- execution


def run_clean(
    src: str,
    out: str | os.PathLike,
    options: CleanOptions = CleanOptions(),
    progress: Progress = Progress(),
    overwrite: bool = False,
) -> dict:
    """Clean SRC into OUT; returns the summary (also written to OUT/summary.json).

    Raises SourceError / RunError, before anything is written, for problems the user can fix.
    """
    started = time.perf_counter()
    source = open_source(src, options.source)
    units = source.units()
    output_format = options.output_format or ("parquet" if source.kind == "hf" else source.kind)
    if output_format not in OUTPUT_FORMATS:
        raise RunError(f"unknown output format {output_format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    paths = RunPaths(Path(out))
    _check_output_folder(paths, source, overwrite)
    _check_models(options)
    fingerprint = options.fingerprint(source, units)
    _prepare_state(paths, fingerprint, overwrite)
    if options.write_output and options.watermark_method:
        from dedupkit.watermark import WatermarkKeyError, load_or_create_key

        try:
            key = load_or_create_key(paths.out, options.watermark_key)
        except WatermarkKeyError as exc:
            raise RunError(str(exc)) from None
        options = dataclasses.replace(options, watermark_key=key.hex())

    timings = {}
    phase_start = time.perf_counter()
    todo = [u for u in units if not paths.signature_shard(u).exists()]
    _run_units("analyse", analyse_unit, source, todo, options, paths, progress, ())
    timings["analyse_s"] = time.perf_counter() - phase_start

    phase_start = time.perf_counter()
    progress.start_phase("decide", 0)
    if not paths.decisions.exists():
        atomic_write_table(paths.decisions, decide(paths, units, options))
    timings["decide_s"] = time.perf_counter() - phase_start

    phase_start = time.perf_counter()
    if options.write_output:
        todo = [u for u in units if not paths.manifest_part(u).exists()]
        _run_units("write", write_unit, source, todo, options, paths, progress, (output_format,))
        manifest = concat(pq.read_table(paths.manifest_part(u)) for u in units)
        if options.watermark_method:
            from dedupkit.watermark import finalize_registry

            finalize_registry(paths.out)
    else:
        decisions = pq.read_table(paths.decisions)
        manifest = manifest_rows(concat(_without_signatures(paths.signature_shard(u)) for u in units), decisions)
    timings["write_s"] = time.perf_counter() - phase_start

    atomic_write_table(paths.manifest, manifest)
    timings["total_s"] = time.perf_counter() - started
    summary = summarize(manifest, source, output_format if options.write_output else None, options, timings)
    atomic_write_bytes(paths.summary, json.dumps(summary, indent=2, sort_keys=True).encode())
    return summary


def open_run_source(out: str | os.PathLike) -> Source:
    """Reopen the source a finished (or interrupted) run in OUT read, with the same reader settings."""
    paths = RunPaths(Path(out))
    if not paths.settings.exists():
        raise RunError(f"{out}: no dedupkit run here (missing {STATE_FOLDER}/run.json)")
    fingerprint = json.loads(paths.settings.read_text())
    source_settings = fingerprint["settings"]["source"]
    options = SourceOptions(
        files_per_unit=source_settings["files_per_unit"], columns=ParquetColumns(**source_settings["columns"])
    )
    return open_source(fingerprint["source"], options)


def count_outcomes(manifest: pa.Table) -> dict:
    """Records by status, dropped ones by duplicate kind (or drop reason), skipped ones by reason kind."""
    statuses = manifest.column("status").to_pylist()
    reasons = manifest.column("reason").to_pylist()
    kinds = column_or_nones(manifest, "dup_kind")
    status = Counter(statuses)
    dropped = Counter(kind or reason_kind(reason) for kind, reason, state in zip(kinds, reasons, statuses) if state == DROPPED)
    skipped = Counter(reason_kind(reason) for reason, state in zip(reasons, statuses) if state == SKIPPED)
    return {
        "records": manifest.num_rows,
        "kept": status.get(KEPT, 0),
        "dropped": status.get(DROPPED, 0),
        "skipped": status.get(SKIPPED, 0),
        "dropped_by_kind": dict(sorted(dropped.items())),
        "skipped_by_reason": dict(sorted(skipped.items(), key=lambda item: (-item[1], item[0]))),
    }


def summarize(manifest: pa.Table, source: Source, output_format, options: CleanOptions, timings: dict) -> dict:
    total = manifest.num_rows
    return {
        "source": source.spec,
        "source_format": source.kind,
        "output_format": output_format,
        **count_outcomes(manifest),
        "workers": options.workers,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "records_per_second": round(total / timings["total_s"], 1) if timings["total_s"] else None,
    }


def reason_kind(reason: str | None) -> str:
    """The kind of a skip reason, without its details: 'truncated image', 'too small'..."""
    return (reason or "unknown").split(":")[0].split(" (")[0]


def _run_units(phase, work, source, units, options, paths, progress: Progress, extra_args: tuple) -> None:
    progress.start_phase(phase, len(units))
    if not units:
        return
    if options.workers <= 1 or len(units) == 1:
        for unit in units:
            work(source, unit, options, paths, *extra_args, tick=progress.advance)
        return
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    with context.Pool(min(options.workers, len(units)), initializer=_init_worker, initargs=(counter,)) as pool:
        pending = [pool.apply_async(_work_in_worker, (work, source, unit, options, paths, extra_args)) for unit in units]
        reported = 0
        while pending:
            time.sleep(0.2)
            with counter.get_lock():
                current = counter.value
            progress.advance(current - reported)
            reported = current
            for result in [p for p in pending if p.ready()]:
                result.get()  # re-raise a worker's exception here
                pending.remove(result)
        progress.advance(counter.value - reported)


_worker_counter = None


def _init_worker(counter) -> None:
    global _worker_counter
    _worker_counter = counter


def _tick_shared(count: int) -> None:
    with _worker_counter.get_lock():
        _worker_counter.value += count


def _work_in_worker(work, source, unit, options, paths, extra_args):
    return work(source, unit, options, paths, *extra_args, tick=_tick_shared)


def _source_identity(source: Source) -> str:
    spec = source.spec
    return spec if spec.startswith("hf:") else str(Path(spec).resolve())


def _source_files_stamp(source: Source, units: list[Unit]) -> str | None:
    """Digest of the local input files' names, sizes and modification times.

    A folder rewritten in place keeps its path; without this a rerun into the same OUT
    would resume from signatures and decisions computed from the old files.
    """
    if source.spec.startswith("hf:"):
        return None
    root = Path(source.spec)
    if root.is_dir():  # every file, not only the units': caption and metadata sidecars count too
        files = sorted(p for p in root.rglob("*") if p.is_file())
    else:
        files = sorted({Path(unit.location) for unit in units})
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return f"{len(files)} files, sha256 {digest.hexdigest()}"


def _check_models(options: CleanOptions) -> None:
    """Load the embedding model before anything is written: missing weights are one line, not a traceback."""
    if options.find_duplicates and options.dedup is not None and options.dedup.embedder:
        from dedupkit.signatures.embedders import MissingWeightsError

        try:
            cached_embedder(options.dedup.embedder)
        except (MissingWeightsError, ValueError) as exc:
            raise RunError(str(exc)) from None


def _check_output_folder(paths: RunPaths, source: Source, overwrite: bool) -> None:
    out = paths.out.resolve()
    if not source.spec.startswith("hf:"):
        src = Path(source.spec).resolve()
        if src.is_dir() and (out == src or src in out.parents):
            raise RunError(f"OUT {paths.out} lies inside SRC {source.spec}; choose an output folder outside the source")
    if out.exists() and not out.is_dir():
        raise RunError(f"OUT {paths.out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not paths.settings.exists() and not overwrite:
        raise RunError(f"OUT {paths.out} is not empty and holds no dedupkit run; choose an empty folder or pass --overwrite")


def _prepare_state(paths: RunPaths, fingerprint: dict, overwrite: bool) -> None:
    wanted = json.dumps(fingerprint, sort_keys=True, default=str)
    if paths.settings.exists():
        previous = paths.settings.read_text()
        if previous != wanted:
            if not overwrite:
                raise RunError(
                    f"OUT {paths.out} holds a run with other settings, another source, or source files changed since; "
                    "pass --overwrite to start over, or choose another folder"
                )
            shutil.rmtree(paths.out)
    elif overwrite and paths.out.exists():
        shutil.rmtree(paths.out)
    paths.state.mkdir(parents=True, exist_ok=True)
    for folder in (paths.out,):
        remove_temporaries(folder)
    if not paths.settings.exists():
        atomic_write_bytes(paths.settings, wanted.encode())

