"""The duplicate gallery of a run: `OUT/report.html` and its pages under `OUT/report/`.

Every duplicate cluster of the manifest, largest first, a page at a time: its keeper
and its members side by side as thumbnails, each with its key, size, how it was found
(dup_kind) and how far it is from the keeper.  Within a cluster the members least
certain to be copies come first (embedding, then hash, then exact matches; farthest
first), so a page shows what a person should check before trusting the clean-up.
The first page also summarizes the run and lists every skipped record with its
reason, and any record dropped for a reason other than duplication.

    OUT/report.html                    summary, clusters page 1, skipped records page 1
    OUT/report/clusters-0002.html ...  further cluster pages
    OUT/report/skipped-0002.html ...   further pages of the record lists
    OUT/report/thumbs/ab/<sha256>-160.jpg
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dedupkit.decode import DecodeLimits
from dedupkit.pipeline import RunError, RunPaths, count_outcomes, open_run_source
from dedupkit.records import DROPPED, SKIPPED
from dedupkit.report.html import (
    Thumbnail,
    ThumbnailRequest,
    escape,
    make_thumbnails,
    page,
    page_count,
    page_slice,
    pager,
    remove_unreferenced,
    stat_list,
    table,
    write_page,
)
from dedupkit.search.pairs import describe_match
from dedupkit.sinks.manifest import column_or_nones
from dedupkit.sources.base import SourceError

REPORT_FILE = "report.html"
PAGES_FOLDER = "report"
THUMBS_FOLDER = "thumbs"

MANIFEST_COLUMNS = ("ordinal", "key", "source", "status", "reason", "sha256", "width", "height", "format",
                    "cluster_id", "keeper_key", "dup_kind", "distance")
#: Later stages' columns, shown as badges on a member when the manifest has them.
BADGE_COLUMNS = ("copyright_marked", "visible_mark_score", "watermark")
#: Least certain first: an embedding match deserves a look before a byte-identical copy.
KIND_ORDER = {"embedding": 0, "verified": 1, "local": 2, "aligned": 3, "thumbnail": 4, "hash": 5, "exact": 6}

CLUSTER_CSS = """
section.cluster { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
                  padding: 10px 14px 12px; margin: 0 0 14px; }
section.cluster h3 { margin: 0 0 8px; font-size: 15px; }
.members { display: flex; flex-wrap: wrap; gap: 10px; }
figure.member { margin: 0; width: calc(var(--thumb) + 14px); padding: 6px; border: 2px solid var(--line);
                border-radius: 6px; background: var(--paper); }
figure.member.keeper { border-color: var(--keep); background: #eef8f0; }
.frame { width: var(--thumb); height: var(--thumb); display: flex; align-items: center; justify-content: center;
         background: #e9edf1; }
.frame img { max-width: 100%; max-height: 100%; display: block; }
.frame.missing { background: #f3e9e9; color: var(--skip); font-size: 12px; padding: 8px; text-align: center; }
figcaption { margin-top: 5px; font-size: 12px; }
figcaption .key { display: block; margin: 2px 0; }
.badge { display: inline-block; font-size: 11px; font-weight: 600; padding: 0 6px; border-radius: 9px;
         border: 1px solid currentColor; margin: 0 3px 2px 0; }
p.more { margin: 8px 0 0; }
nav.jump { padding: 8px 24px; background: var(--card); border-bottom: 1px solid var(--line); font-size: 13px; }
"""


@dataclass(frozen=True)
class Layout:
    """Where each file goes and how one page links to another (report.html lives one folder up)."""

    out: Path

    @property
    def report(self) -> Path:
        return self.out / REPORT_FILE

    @property
    def pages(self) -> Path:
        return self.out / PAGES_FOLDER

    @property
    def thumbs(self) -> Path:
        return self.pages / THUMBS_FOLDER

    def path(self, series: str, number: int) -> Path:
        return self.report if number == 1 else self.pages / f"{series}-{number:04d}.html"

    def href(self, series: str, number: int, from_root: bool, anchor: str = "") -> str:
        if number == 1:
            target = REPORT_FILE if from_root else f"../{REPORT_FILE}"
        else:
            target = (f"{PAGES_FOLDER}/" if from_root else "") + f"{series}-{number:04d}.html"
        return target + (f"#{anchor}" if anchor else "")

    def thumb_src(self, name: str, from_root: bool) -> str:
        return (f"{PAGES_FOLDER}/" if from_root else "") + f"{THUMBS_FOLDER}/{name}"


@dataclass(frozen=True)
class RecordList:
    """A paged table of records that did not make it into the output for a reason of their own."""

    series: str
    title: str
    rows: list[dict]


def write_cluster_report(
    out: str | Path,
    page_size: int = 50,
    thumb_px: int = 160,
    max_members: int = 60,
    rows_per_page: int = 1000,
    workers: int = 1,
) -> Path:
    """Write OUT/report.html (and OUT/report/) for the run in OUT; returns the report's path.

    `page_size` clusters a page; at most `max_members` thumbnails a cluster (the rest are
    counted and named by cluster_id); `rows_per_page` rows a page for the skipped list.
    Thumbnails come from the run's source, read once, only the units holding a shown
    member; without the source the pages still list every member, without pictures.
    """
    for name, value in (("page size", page_size), ("thumbnail size", thumb_px),
                        ("members shown per cluster", max_members), ("rows per page", rows_per_page)):
        if value < 1:
            raise RunError(f"{name} must be at least 1, got {value}")
    layout = Layout(Path(out))
    manifest = read_manifest(layout.out)
    summary = _read_summary(layout.out)
    clusters = ordered_clusters(manifest)
    lists = record_lists(manifest)

    shown = [members[:max_members] for members in clusters]
    source, unavailable = _run_source(layout.out)
    thumbnails = make_thumbnails(
        source,
        (ThumbnailRequest(m["ordinal"], m["sha256"]) for members in shown for m in members if m["sha256"]),
        layout.thumbs,
        thumb_px,
        workers=workers,
        unavailable=unavailable,
        limits=_run_limits(layout.out),
    )

    missing = Counter(t.note for t in thumbnails.values() if not t.path)
    header = _header(manifest, summary, len(clusters), missing)
    cluster_pages = page_count(len(clusters), page_size)
    written = set()
    for number in range(1, cluster_pages + 1):
        from_root = number == 1
        window = page_slice(number, page_size)
        body = [header + _jump_links(layout, lists, from_root), "<main>", _clusters_section(
            layout, number, cluster_pages, clusters[window], shown[window], window.start, len(clusters),
            thumbnails, from_root)]
        if from_root:
            body += [_list_section(layout, records, 1, rows_per_page, from_root=True) for records in lists]
        body.append("</main>")
        written.add(write_page(layout.path("clusters", number), _document(summary, number, cluster_pages, body, thumb_px)))
    for records in lists:
        for number in range(2, page_count(len(records.rows), rows_per_page) + 1):
            body = [header + _jump_links(layout, lists, False), "<main>",
                    _list_section(layout, records, number, rows_per_page, from_root=False), "</main>"]
            written.add(write_page(layout.path(records.series, number), _document(summary, number, None, body, thumb_px)))

    _remove_stale_pages(layout, written)
    remove_unreferenced(layout.thumbs, (t.path for t in thumbnails.values() if t.path))
    return layout.report


# -- reading the run -------------------------------------------------------------------


def read_manifest(out: Path) -> pa.Table:
    path = out / "manifest.parquet"
    if not path.is_file():
        raise RunError(f"{out}: no manifest.parquet; run `dedupkit clean SRC {out}` (or `dedupkit dedup`) first")
    try:
        available = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as exc:
        raise RunError(f"{path}: unreadable ({exc}); rerun `dedupkit clean` to rewrite it") from None
    missing = [c for c in ("ordinal", "key", "status") if c not in available]
    if missing:
        raise RunError(f"{path}: not a dedupkit manifest (no {', '.join(missing)} column)")
    return pq.read_table(path, columns=[c for c in MANIFEST_COLUMNS + BADGE_COLUMNS if c in available])


def ordered_clusters(manifest: pa.Table) -> list[list[dict]]:
    """Every cluster's member rows, largest cluster first (then by cluster_id); in each,
    the keeper first, then the members least certain to be copies."""
    if "cluster_id" not in manifest.column_names:
        return []
    in_cluster = manifest.filter(pc.fill_null(pc.greater_equal(manifest["cluster_id"], 0), False))
    if in_cluster.num_rows == 0:
        return []
    cluster_id = in_cluster["cluster_id"].to_numpy()
    ids, which, sizes = np.unique(cluster_id, return_inverse=True, return_counts=True)
    rank_of_cluster = np.empty(len(ids), dtype=np.int64)
    rank_of_cluster[np.lexsort((ids, -sizes))] = np.arange(len(ids))
    keys = in_cluster["key"].to_numpy(zero_copy_only=False)
    keepers = column_or_nones(in_cluster, "keeper_key")
    is_keeper = np.array([k == kk for k, kk in zip(keys, keepers)], dtype=bool)
    kind_rank = np.array([KIND_ORDER.get(k, len(KIND_ORDER)) for k in column_or_nones(in_cluster, "dup_kind")])
    distance = np.nan_to_num(np.asarray(column_or_nones(in_cluster, "distance"), dtype=np.float64), nan=-1.0)
    order = np.lexsort((in_cluster["ordinal"].to_numpy(), -distance, kind_rank, ~is_keeper, rank_of_cluster[which]))
    rows = in_cluster.take(pa.array(order)).to_pylist()
    for row, keeper in zip(rows, is_keeper[order]):
        row["is_keeper"] = bool(keeper)
    bounds = np.concatenate([[0], np.cumsum(np.sort(sizes)[::-1])])
    return [rows[bounds[i] : bounds[i + 1]] for i in range(len(ids))]


def record_lists(manifest: pa.Table) -> list[RecordList]:
    """Skipped records, and records dropped outside any duplicate cluster (by a later stage)."""
    status = manifest["status"]
    skipped = manifest.filter(pc.equal(status, SKIPPED))
    dropped = pc.equal(status, DROPPED)
    if "cluster_id" in manifest.column_names:
        dropped = pc.and_(dropped, pc.invert(pc.fill_null(pc.greater_equal(manifest["cluster_id"], 0), False)))
    lists = [RecordList("skipped", "Skipped records", _sorted_rows(skipped))]
    other = manifest.filter(dropped)
    if other.num_rows:
        lists.append(RecordList("dropped", "Dropped outside duplicate clusters", _sorted_rows(other)))
    return lists


def _sorted_rows(table: pa.Table) -> list[dict]:
    keep = [c for c in ("ordinal", "key", "source", "reason") if c in table.column_names]
    return table.select(keep).sort_by("ordinal").to_pylist()


def _read_summary(out: Path) -> dict:
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def _run_limits(out: Path) -> DecodeLimits:
    """The decode limits the run used, so a picture it accepted is not refused here."""
    try:
        return DecodeLimits(**json.loads(RunPaths(out).settings.read_text())["settings"]["limits"])
    except (OSError, ValueError, KeyError, TypeError):
        return DecodeLimits()


def _run_source(out: Path):
    try:
        return open_run_source(out), ""
    except (RunError, SourceError) as exc:
        return None, f"source not available: {exc}"


# -- rendering -------------------------------------------------------------------------


def _document(summary: dict, number: int, pages: int | None, body: list[str], thumb_px: int) -> str:
    title = f"dedupkit report: {summary.get('source', 'run')}" + (f" (page {number} of {pages})" if pages and pages > 1 else "")
    return page(title, "\n".join(body), CLUSTER_CSS + f":root {{ --thumb: {thumb_px}px; }}")


def _header(manifest: pa.Table, summary: dict, clusters: int, missing: Counter) -> str:
    """The run's summary, counted from the manifest itself so it matches what the pages list."""
    counts = count_outcomes(manifest)
    chips = stat_list(
        [("records", f"{counts['records']:,}", ""), ("kept", f"{counts['kept']:,}", "kept"),
         ("dropped", f"{counts['dropped']:,}", "dropped"), ("skipped", f"{counts['skipped']:,}", "skipped"),
         ("duplicate clusters", f"{clusters:,}", "")]
    )
    details = []
    if counts["dropped_by_kind"]:
        details.append("dropped by kind: " + ", ".join(f"{escape(k)} {n:,}" for k, n in counts["dropped_by_kind"].items()))
    if counts["skipped_by_reason"]:
        details.append("skipped: " + ", ".join(f"{escape(k)} {n:,}" for k, n in counts["skipped_by_reason"].items()))
    source = escape(summary.get("source", "unknown source"))
    fmt = summary.get("source_format")
    subtitle = f'<div class="muted">source <code>{source}</code>' + (f" ({escape(fmt)})" if fmt else "") + "</div>"
    notes = "".join(f'<div class="muted">{d}</div>' for d in details)
    warn = "".join(
        f'<div class="skipped">{n:,} picture{"s" if n > 1 else ""} not shown: {escape(note)}</div>'
        for note, n in missing.most_common()
    )
    return f'<header class="top"><h1>dedupkit report</h1>{subtitle}{chips}{notes}{warn}</header>'


def _clusters_section(layout: Layout, number: int, pages: int, clusters: list[list[dict]], shown: list[list[dict]],
                      first_index: int, total: int, thumbnails: dict[int, Thumbnail], from_root: bool) -> str:
    nav = pager(number, pages, lambda n: layout.href("clusters", n, from_root))
    if total == 0:
        return '<h2 id="clusters">Duplicate clusters</h2><p class="muted">No duplicate clusters in this run.</p>'
    span = f"{first_index + 1:,}\u2013{first_index + len(clusters):,} of {total:,}"
    intro = (f'<h2 id="clusters">Duplicate clusters <span class="muted">{span}</span></h2>'
             '<p class="muted">Largest first. In each cluster the keeper comes first, then the members least certain '
             'to be copies (embedding, hash, then exact matches; farthest from the keeper first).</p>')
    cards = "\n".join(
        _cluster_card(members, visible, thumbnails, layout, from_root) for members, visible in zip(clusters, shown)
    )
    return intro + nav + cards + nav


def _cluster_card(members: list[dict], visible: list[dict], thumbnails: dict[int, Thumbnail], layout: Layout,
                  from_root: bool) -> str:
    cluster_id = members[0]["cluster_id"]
    kinds = Counter(m.get("dup_kind") for m in members if not m["is_keeper"])
    how = ", ".join(f"{n:,} {escape(k or 'unknown')}" for k, n in sorted(kinds.items(), key=lambda kv: str(kv[0])))
    figures = "".join(_member_figure(m, thumbnails.get(m["ordinal"]), layout, from_root) for m in visible)
    hidden = len(members) - len(visible)
    more = (f'<p class="more muted">{hidden:,} more members not shown: rows with cluster_id == {cluster_id} '
            'in manifest.parquet.</p>') if hidden else ""
    return (f'<section class="cluster" id="cluster-{cluster_id}"><h3>Cluster {cluster_id} '
            f'<span class="muted">\u00b7 {len(members):,} images \u00b7 {how}</span></h3>'
            f'<div class="members">{figures}</div>{more}</section>')


def _member_figure(member: dict, thumbnail: Thumbnail | None, layout: Layout, from_root: bool) -> str:
    key = escape(member["key"])
    hint = escape(f"{member['key']}\n{member.get('source') or ''}\n{member.get('reason') or ''}".strip())
    if thumbnail and thumbnail.path:
        picture = f'<div class="frame"><img src="{escape(layout.thumb_src(thumbnail.path, from_root))}" alt="{key}"></div>'
    else:
        picture = f'<div class="frame missing">{escape(thumbnail.note if thumbnail else "no stored bytes")}</div>'
    if member["is_keeper"]:
        role = '<span class="badge kept">keeper</span>'
        how = ""
    else:
        status = member.get("status") or "?"
        role = f'<span class="badge {escape(status)}">{escape(status)}</span>'
        how = f"<div>{escape(describe_match(member.get('dup_kind'), member.get('distance')))}</div>"
    size = _size(member)
    badges = "".join(f'<span class="badge">{escape(b)}</span>' for b in _badges(member))
    return (f'<figure class="member{" keeper" if member["is_keeper"] else ""}" title="{hint}">{picture}'
            f'<figcaption>{role}{badges}<span class="key">{key}</span>'
            f'<div class="muted">{escape(size)}</div>{how}</figcaption></figure>')


def _size(member: dict) -> str:
    width, height, fmt = member.get("width"), member.get("height"), member.get("format")
    dims = f"{width}\u00d7{height}" if width and height else "size unknown"
    return f"{dims} {fmt}" if fmt else dims


def _badges(member: dict) -> list[str]:
    badges = []
    if member.get("copyright_marked"):
        badges.append("\u00a9 marked")
    score = member.get("visible_mark_score")
    if isinstance(score, (int, float)) and not np.isnan(score):
        badges.append(f"mark {score:.2f}")
    if member.get("watermark"):
        badges.append("watermarked")
    return badges


def _jump_links(layout: Layout, lists: list[RecordList], from_root: bool) -> str:
    """Links to the sections of the first page, from any page."""
    targets = [("clusters", "duplicate clusters")] + [(r.series, f"{r.title.lower()} ({len(r.rows):,})") for r in lists]
    links = " \u00b7 ".join(
        f'<a href="{escape(layout.href("clusters", 1, from_root, anchor))}">{escape(label)}</a>' for anchor, label in targets
    )
    return f'<nav class="jump">Go to: {links}</nav>'


def _list_section(layout: Layout, records: RecordList, number: int, rows_per_page: int, from_root: bool) -> str:
    pages = page_count(len(records.rows), rows_per_page)
    window = records.rows[page_slice(number, rows_per_page)]
    heading = f'<h2 id="{records.series}">{escape(records.title)} <span class="muted">{len(records.rows):,}</span></h2>'
    if not records.rows:
        return heading + '<p class="muted">None.</p>'
    nav = pager(number, pages, lambda n: layout.href(records.series, n, from_root, anchor=records.series if n == 1 else ""))
    rows = table(("key", "source", "reason"), ((r["key"], r.get("source"), r.get("reason")) for r in window))
    return heading + nav + rows + nav


def _remove_stale_pages(layout: Layout, written: set[Path]) -> None:
    """Pages left over from an earlier, longer report of this folder."""
    if not layout.pages.is_dir():
        return
    for path in layout.pages.glob("*.html"):
        if re.fullmatch(r"[a-z]+-\d{4}\.html", path.name) and path not in written:
            path.unlink()
