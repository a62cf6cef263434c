"""Small pieces every dedupkit HTML report shares: escaping, page frame, paging, thumbnails.

Reports open straight from disk: no server, no script, no external asset.  Each page
carries a Content-Security-Policy that allows only its own folder's images and inline
CSS, so even a key that slipped past escaping could not run code or reach the network.
Keys and reasons come from users' data and are always escaped.
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from PIL import Image

from dedupkit.decode import DecodeError, DecodeLimits, flatten_alpha, open_image
from dedupkit.sinks import atomic_write_bytes
from dedupkit.sources import Source
from dedupkit.sources.base import UNIT_STRIDE, SourceError

CONTENT_SECURITY_POLICY = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"

BASE_CSS = """
:root { --ink: #1d232a; --muted: #5d6873; --line: #d8dee4; --paper: #f6f8fa; --card: #fff;
        --keep: #1a7f37; --drop: #b35900; --skip: #9a2b2b; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       color: var(--ink); background: var(--paper); }
header.top { background: var(--card); border-bottom: 1px solid var(--line); padding: 14px 24px; }
header.top h1 { margin: 0 0 4px; font-size: 20px; }
main { padding: 16px 24px 40px; }
h2 { font-size: 17px; margin: 26px 0 10px; }
.muted { color: var(--muted); }
code, .key { font-family: "DejaVu Sans Mono", ui-monospace, monospace; font-size: 12px; overflow-wrap: anywhere; }
.stats { display: flex; flex-wrap: wrap; gap: 8px; margin: 10px 0 4px; padding: 0; list-style: none; }
.stats li { background: var(--paper); border: 1px solid var(--line); border-radius: 6px; padding: 4px 10px; }
.stats strong { font-size: 16px; }
.kept { color: var(--keep); } .dropped { color: var(--drop); } .skipped { color: var(--skip); }
nav.pager { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; margin: 12px 0; }
nav.pager a, nav.pager span { padding: 3px 9px; border: 1px solid var(--line); border-radius: 5px;
                              background: var(--card); text-decoration: none; color: var(--ink); }
nav.pager span.current { background: var(--ink); color: #fff; border-color: var(--ink); }
nav.pager span.gap, nav.pager span.disabled { border: none; background: none; color: var(--muted); }
table.rows { border-collapse: collapse; background: var(--card); width: 100%; }
table.rows th, table.rows td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
table.rows th { background: var(--paper); }
"""


def escape(value: object) -> str:
    """Text for an HTML body or a quoted attribute; None shows as an empty string."""
    return "" if value is None else html.escape(str(value), quote=True)


def page(title: str, body: str, css: str = "") -> str:
    """A complete standalone HTML document around `body` (already HTML)."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{BASE_CSS}{css}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_page(path: Path, document: str) -> Path:
    atomic_write_bytes(path, document.encode("utf-8"))
    return path


def page_count(items: int, page_size: int) -> int:
    """Pages needed for `items` (at least one, so an empty report still has a page)."""
    if page_size < 1:
        raise ValueError(f"page size must be at least 1, got {page_size}")
    return max(1, math.ceil(items / page_size))


def page_slice(page_number: int, page_size: int) -> slice:
    """Items on 1-based page `page_number`."""
    return slice((page_number - 1) * page_size, page_number * page_size)


def pager(current: int, total: int, href: Callable[[int], str], window: int = 2) -> str:
    """prev / numbered / next links; long runs of pages fold into an ellipsis."""
    if total <= 1:
        return ""
    shown = sorted({1, total, *range(max(1, current - window), min(total, current + window) + 1)})
    parts = [_pager_link(current - 1, "\u2039 prev", href) if current > 1 else '<span class="disabled">\u2039 prev</span>']
    previous = 0
    for number in shown:
        if number > previous + 1:
            parts.append('<span class="gap">\u2026</span>')
        parts.append(
            f'<span class="current">{number}</span>' if number == current else _pager_link(number, str(number), href)
        )
        previous = number
    parts.append(_pager_link(current + 1, "next \u203a", href) if current < total else '<span class="disabled">next \u203a</span>')
    return f'<nav class="pager" aria-label="pages">{"".join(parts)}</nav>'


def _pager_link(number: int, label: str, href: Callable[[int], str]) -> str:
    return f'<a href="{escape(href(number))}">{escape(label)}</a>'


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], css_class: str = "rows") -> str:
    """A plain table; every cell is escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def stat_list(items: Iterable[tuple[str, object, str]]) -> str:
    """A row of `label: value` chips; the third item is an optional CSS class."""
    chips = "".join(f'<li class="{escape(cls)}">{escape(label)} <strong>{escape(value)}</strong></li>' for label, value, cls in items)
    return f'<ul class="stats">{chips}</ul>'


# -- thumbnails ------------------------------------------------------------------------


@dataclass(frozen=True)
class ThumbnailRequest:
    ordinal: int
    sha256: str
    """What the run saw: a thumbnail is made only from bytes that still hash to it."""


@dataclass(frozen=True)
class Thumbnail:
    path: str | None
    """Relative to the thumbnail folder, or None when there is no picture to show."""
    note: str = ""
    """Why there is no picture (source gone, bytes changed, ...)."""


def thumbnail_name(sha256: str, side: int) -> str:
    """Content-addressed: identical bytes share one file, and a rerun reuses it."""
    return f"{sha256[:2]}/{sha256}-{side}.jpg"


def thumbnail_jpeg(data: bytes, side: int, limits: DecodeLimits = DecodeLimits()) -> bytes:
    """A JPEG at most `side` px on its longer side, from the one safe decode."""
    image, _ = open_image(data, limits)
    image = flatten_alpha(image)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, optimize=True)
    return buffer.getvalue()


def make_thumbnails(
    source: Source | None,
    requests: Iterable[ThumbnailRequest],
    folder: Path,
    side: int,
    workers: int = 1,
    unavailable: str = "source not available",
    limits: DecodeLimits = DecodeLimits(),
) -> dict[int, Thumbnail]:
    """Thumbnails of the requested records under `folder`, keyed by ordinal.

    Only the source units that hold a requested record are read, each once, and each
    distinct picture is decoded once (byte-identical twins share a thumbnail, checked
    against the sha256 the run recorded for each of them); thumbnails already on disk (same bytes, same size) are
    reused without touching the source.  With no source, every missing one gets the
    note `unavailable`.  `limits` should be the run's, so whatever the run decoded decodes here.
    """
    results: dict[int, Thumbnail] = {}
    pending: dict[int, dict[int, str]] = {}
    for request in requests:
        name = thumbnail_name(request.sha256, side)
        if (folder / name).is_file():
            results[request.ordinal] = Thumbnail(name)
        else:
            pending.setdefault(request.ordinal // UNIT_STRIDE, {})[request.ordinal] = request.sha256
    if not pending:
        return results
    if source is None:
        results.update((o, Thumbnail(None, unavailable)) for wanted in pending.values() for o in wanted)
        return results
    try:
        units = {unit.index: unit for unit in source.units()}
    except SourceError as exc:
        results.update((o, Thumbnail(None, f"source not available: {exc}")) for wanted in pending.values() for o in wanted)
        return results
    jobs = [(source, units.get(index), wanted, folder, side, limits) for index, wanted in sorted(pending.items())]
    if workers > 1 and len(jobs) > 1:
        # spawn, as the pipeline's pool does: forking a process that holds Arrow threads can hang.
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
            for made in pool.map(_thumbnails_of_unit, *zip(*jobs)):
                results.update(made)
    else:
        for job in jobs:
            results.update(_thumbnails_of_unit(*job))
    return results


def _thumbnails_of_unit(
    source: Source, unit, wanted: dict[int, str], folder: Path, side: int, limits: DecodeLimits
) -> dict[int, Thumbnail]:
    made: dict[int, Thumbnail] = {}
    missing = "no longer in the source"
    if unit is not None:
        try:
            for record in source.read(unit):
                expected = wanted.get(record.ordinal)
                if expected is None:
                    continue
                made[record.ordinal] = _thumbnail_of(record.data, expected, folder, side, limits)
                if len(made) == len(wanted):
                    break
        except (OSError, SourceError) as exc:  # the shard vanished or broke since the run
            missing = f"unreadable in the source now: {exc}"
    for ordinal in wanted:
        made.setdefault(ordinal, Thumbnail(None, missing))
    return made


def _thumbnail_of(data: bytes | None, expected_sha256: str, folder: Path, side: int, limits: DecodeLimits) -> Thumbnail:
    if data is None:
        return Thumbnail(None, "unreadable in the source now")
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        return Thumbnail(None, "changed in the source since the run")
    name = thumbnail_name(expected_sha256, side)
    if (folder / name).is_file():  # a byte-identical twin read earlier made it
        return Thumbnail(name)
    try:
        atomic_write_bytes(folder / name, thumbnail_jpeg(data, side, limits))
    except DecodeError as exc:
        return Thumbnail(None, f"cannot decode: {exc}")
    return Thumbnail(name)


def remove_unreferenced(folder: Path, keep: Iterable[str]) -> None:
    """Delete thumbnails under `folder` that no page refers to any more."""
    if not folder.is_dir():
        return
    wanted = {os.path.normpath(folder / name) for name in keep}
    for path in folder.rglob("*.jpg"):
        if os.path.normpath(path) not in wanted:
            path.unlink(missing_ok=True)
