"""`dedupkit` command line: thin shells over the library, with progress and a summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dedupkit.decode import DecodeLimits
from dedupkit.pipeline import CleanOptions, Progress as PipelineProgress, RunError, run_clean
from dedupkit.sources import SourceError, SourceOptions
from dedupkit.sources.parquet import ParquetColumns

app = typer.Typer(
    help=(
        "Clean image training datasets before a generative model learns to copy them: "
        "stream any dataset, drop exact and near duplicates, account for every record."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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

    def as_callbacks(self) -> PipelineProgress:
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


def _run(src: str, out: Path, options: CleanOptions, overwrite: bool) -> None:
    progress = _RichProgress()
    try:
        with progress.bar:
            summary = run_clean(src, out, options, progress.as_callbacks(), overwrite=overwrite)
    except (SourceError, RunError) as exc:
        _fail(str(exc))
    _print_summary(summary, out)


def _options(
    output_format, shard_size, workers, min_side, max_pixels, image_column, caption_column, url_column, key_column,
    write_output=True,
) -> CleanOptions:
    if workers < 1:
        _fail("--workers must be at least 1")
    if shard_size < 1:
        _fail("--shard-size must be at least 1")
    return CleanOptions(
        output_format=output_format,
        shard_size=shard_size,
        workers=workers,
        write_output=write_output,
        limits=DecodeLimits(min_side=min_side, max_pixels=max_pixels),
        source=SourceOptions(
            files_per_unit=shard_size,
            columns=ParquetColumns(image=image_column, caption=caption_column, url=url_column, key=key_column),
        ),
    )


# Options shared by the commands that read a dataset.
WorkersOption = typer.Option(1, "--workers", "-w", help="Worker processes; each takes whole input shards.")
ShardSizeOption = typer.Option(1000, "--shard-size", help="Records per output shard (and per folder work unit).")
MinSideOption = typer.Option(16, "--min-side", help="Skip images whose shorter side is below this many pixels.")
MaxPixelsOption = typer.Option(
    DecodeLimits().max_pixels, "--max-pixels", help="Skip images whose header declares more pixels (decompression bombs)."
)
ImageColumnOption = typer.Option(None, "--image-column", help="Parquet / hf: the image column (default: detected).")
CaptionColumnOption = typer.Option(None, "--caption-column", help="Parquet / hf: the caption column (default: detected).")
UrlColumnOption = typer.Option(None, "--url-column", help="Parquet / hf: the source URL column (default: detected).")
KeyColumnOption = typer.Option(None, "--key-column", help="Parquet / hf: the record key column (default: detected).")
OverwriteOption = typer.Option(False, "--overwrite", help="Delete what OUT holds and start over instead of resuming.")


@app.command()
def clean(
    src: str = typer.Argument(..., help=SRC_HELP),
    out: Path = typer.Argument(..., help="Output folder: data/, manifest.parquet, summary.json. A rerun resumes."),
    output_format: Optional[str] = typer.Option(
        None, "--format", "-f", help="Output format: folder, webdataset or parquet (default: the source's)."
    ),
    shard_size: int = ShardSizeOption,
    workers: int = WorkersOption,
    min_side: int = MinSideOption,
    max_pixels: int = MaxPixelsOption,
    image_column: Optional[str] = ImageColumnOption,
    caption_column: Optional[str] = CaptionColumnOption,
    url_column: Optional[str] = UrlColumnOption,
    key_column: Optional[str] = KeyColumnOption,
    overwrite: bool = OverwriteOption,
) -> None:
    """Stream SRC, drop duplicates, write the kept records to OUT/data and account for every record.

    OUT/manifest.parquet has one row per input record (kept, dropped with its keeper, or
    skipped with the reason); OUT/summary.json has the counts and timings. The source is
    never modified. Run the same command again after an interruption to resume.
    """
    options = _options(output_format, shard_size, workers, min_side, max_pixels, image_column, caption_column, url_column, key_column)
    _run(src, out, options, overwrite)


@app.command()
def dedup(
    src: str = typer.Argument(..., help=SRC_HELP),
    out: Path = typer.Argument(..., help="Output folder for manifest.parquet, signatures/ and summary.json."),
    shard_size: int = ShardSizeOption,
    workers: int = WorkersOption,
    min_side: int = MinSideOption,
    max_pixels: int = MaxPixelsOption,
    image_column: Optional[str] = ImageColumnOption,
    caption_column: Optional[str] = CaptionColumnOption,
    url_column: Optional[str] = UrlColumnOption,
    key_column: Optional[str] = KeyColumnOption,
    overwrite: bool = OverwriteOption,
) -> None:
    """Decide duplicates only: write the manifest (who is a copy of whom), copy no images."""
    options = _options(None, shard_size, workers, min_side, max_pixels, image_column, caption_column, url_column, key_column, write_output=False)
    _run(src, out, options, overwrite)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
