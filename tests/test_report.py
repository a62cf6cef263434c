"""The duplicate gallery: every cluster and skipped record shown, paged, escaped, offline, rendered."""

from __future__ import annotations

import html
import io
import json
import shutil
import subprocess
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import jpeg, png, thumbnails, write_folder
from dedupkit.decode import DecodeLimits
from dedupkit.pipeline import CleanOptions, RunError, run_clean
from dedupkit.sources import SourceOptions
from dedupkit.report import write_cluster_report
from dedupkit.report.clusters import ordered_clusters
from dedupkit.report.html import ThumbnailRequest, make_thumbnails, page_count, pager
from dedupkit.sources.base import UNIT_STRIDE
from dedupkit.sources.folder import FolderSource
from dedupkit.samples import encode

SCRIPT_KEY = '<script>alert("x")</script>.bmp'
QUOTED_SKIPPED_KEY = "odd/it's \"bad\" & <b>.txt"
CHROMIUM = shutil.which("chromium")


def _decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def build_dataset(root: Path) -> Path:
    """Real pictures with planted exact copies (clusters of 4, 3, 2, 2), singles and bad files.

    Copies are the same pixels in other formats, so JPEG, PNG and BMP members all get thumbnails.
    """
    pictures = thumbnails(8, max_side=120)
    files: dict[str, bytes] = {}
    photo = jpeg(pictures[0])
    same_pixels = _decoded(photo)
    files["photos/a.jpg"] = photo
    files["copies/a.png"] = png(same_pixels)
    files["copies/a_again.jpg"] = photo
    files[SCRIPT_KEY] = encode(same_pixels, "BMP")
    files["photos/b.png"] = png(pictures[1])
    files["copies/b copy.png"] = png(pictures[1])
    files["copies/it's b.bmp"] = encode(pictures[1], "BMP")
    for index, name in ((2, "c"), (3, "d")):
        files[f"photos/{name}.png"] = png(pictures[index])
        files[f"copies/{name}.bmp"] = encode(pictures[index], "BMP")
    for index in range(4, 8):
        files[f"singles/{index}.jpg"] = jpeg(pictures[index])
    files["odd/empty.jpg"] = b""
    files[QUOTED_SKIPPED_KEY] = b"not a picture\n"
    files["odd/speck.png"] = png(pictures[0].resize((3, 2)))
    return write_folder(root, files)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    out = root / "out"
    run_clean(str(build_dataset(root / "src")), out)
    return out


@pytest.fixture()
def fresh_run(run, tmp_path) -> Path:
    """A copy of the finished run, so each test writes its own report."""
    copy = tmp_path / "out"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("report", "report.html"))
    return copy


def manifest(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest.parquet").to_pylist()


class ReportPage(HTMLParser):
    """What a person sees on one page: clusters with their member figures, table rows, links."""

    def __init__(self, path: Path):
        super().__init__(convert_charrefs=True)
        self.path = path
        self.clusters: list[tuple[int, list[dict]]] = []
        self.rows: dict[str, list[list[str]]] = defaultdict(list)
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.meta: list[dict] = []
        self.ids: set[str] = set()
        self._section = ""
        self._figure: dict | None = None
        self._in_key = False
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append(tag)
        classes = (attributes.get("class") or "").split()
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            if name in attributes:
                self.urls.append((tag, name, attributes[name]))
        if "id" in attributes:
            self.ids.add(attributes["id"])
        if tag == "meta":
            self.meta.append(attributes)
        if tag == "h2":
            self._section = attributes.get("id", "")
        if tag == "section" and "cluster" in classes:
            self.clusters.append((int(attributes["id"].removeprefix("cluster-")), []))
        if tag == "figure":
            self._figure = {"keeper": "keeper" in classes, "key": "", "src": None, "alt": None, "text": ""}
            self.clusters[-1][1].append(self._figure)
        if tag == "img" and self._figure is not None:
            self._figure["src"], self._figure["alt"] = attributes["src"], attributes.get("alt")
        if tag == "span" and "key" in classes:
            self._in_key = True
        if tag == "tr":
            self._row = []
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        if tag == "span":
            self._in_key = False
        if tag == "td" and self._row is not None:
            self._row.append("".join(self._cell or []))
            self._cell = None
        if tag == "tr" and self._row:
            self.rows[self._section].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._figure is not None:
            self._figure["text"] += data
            if self._in_key:
                self._figure["key"] += data
        if self._cell is not None:
            self._cell.append(data)


def all_pages(out: Path) -> list[ReportPage]:
    extra = sorted((out / "report").glob("*.html"))
    return [ReportPage(out / "report.html")] + [ReportPage(p) for p in extra]


def clusters_in_manifest(rows: list[dict]) -> dict[int, list[dict]]:
    found = defaultdict(list)
    for row in rows:
        if row["cluster_id"] is not None and row["cluster_id"] >= 0:
            found[row["cluster_id"]].append(row)
    return found


def test_every_cluster_member_and_skipped_record_is_shown_largest_first(fresh_run):
    write_cluster_report(fresh_run, page_size=2, rows_per_page=2)
    rows = manifest(fresh_run)
    expected = clusters_in_manifest(rows)
    assert sorted(len(m) for m in expected.values()) == [2, 2, 3, 4]
    pages = all_pages(fresh_run)

    cluster_pages = [p for p in pages if p.path.name == "report.html" or p.path.name.startswith("clusters-")]
    shown = [cluster for p in cluster_pages for cluster in p.clusters]
    assert sorted(c for c, _ in shown) == sorted(expected), "each cluster exactly once"
    assert [len(members) for _, members in shown] == sorted((len(m) for m in expected.values()), reverse=True)
    for cluster_id, figures in shown:
        members = expected[cluster_id]
        assert sorted(f["key"] for f in figures) == sorted(m["key"] for m in members)
        keeper = {m["keeper_key"] for m in members}
        assert [f["key"] for f in figures if f["keeper"]] == list(keeper)
        assert figures[0]["keeper"], "the keeper comes first"
        for figure in figures[1:]:
            assert "exact copy" in figure["text"] and "dropped" in figure["text"]
        sizes = {m["key"]: f"{m['width']}\u00d7{m['height']}" for m in members}
        assert all(sizes[f["key"]] in f["text"] for f in figures)

    skipped = [r["key"] for r in rows if r["status"] == "skipped"]
    assert len(skipped) == 3
    listed = [row for p in pages for row in p.rows["skipped"]]
    assert sorted(row[0] for row in listed) == sorted(skipped)
    reasons = {r["key"]: r["reason"] for r in rows}
    assert all(row[2] == reasons[row[0]] for row in listed)


def test_pages_split_at_page_size_and_stale_pages_go(fresh_run):
    clusters = len(clusters_in_manifest(manifest(fresh_run)))
    for page_size, pages in ((1, clusters), (clusters - 1, 2), (clusters, 1), (clusters + 5, 1)):
        write_cluster_report(fresh_run, page_size=page_size, rows_per_page=2)
        cluster_files = sorted((fresh_run / "report").glob("clusters-*.html"))
        assert len(cluster_files) == pages - 1
        per_page = [len(ReportPage(p).clusters) for p in [fresh_run / "report.html", *cluster_files]]
        assert per_page == [min(page_size, clusters - i * page_size) for i in range(pages)]
    assert sorted(p.name for p in (fresh_run / "report").glob("skipped-*.html")) == ["skipped-0002.html"]
    write_cluster_report(fresh_run, page_size=clusters, rows_per_page=3)
    assert not list((fresh_run / "report").glob("skipped-*.html"))


def test_thumbnails_made_by_several_workers_match_one(fresh_run, tmp_path):
    """Units of 3 files, so the members are spread over several units read in parallel."""
    small_units = tmp_path / "small-units"
    source = json.loads((fresh_run / "summary.json").read_text())["source"]
    run_clean(source, small_units, CleanOptions(source=SourceOptions(files_per_unit=3)))
    write_cluster_report(small_units, workers=2)
    write_cluster_report(fresh_run, workers=1)
    thumbs = lambda out: {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "report").rglob("*.jpg")}
    assert thumbs(small_units) == thumbs(fresh_run) and thumbs(fresh_run)
    pictures = lambda out: [(f["key"], f["src"]) for _, ms in ReportPage(out / "report.html").clusters for f in ms]
    assert pictures(small_units) == pictures(fresh_run)


class ReadCountingFolder(FolderSource):
    """The real folder reader, noting which units it was asked to read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.units_read: list[int] = []

    def read(self, unit):
        self.units_read.append(unit.index)
        yield from super().read(unit)


def test_only_units_holding_a_wanted_record_are_read_and_twins_decode_once(run, tmp_path):
    source = ReadCountingFolder(json.loads((run / "summary.json").read_text())["source"], files_per_unit=3)
    records = [r for unit in source.units() for r in source.read(unit)]
    by_key = {r.key: r for r in records}
    wanted = [by_key[k] for k in ("photos/a.jpg", "copies/a_again.jpg", "copies/b copy.png")]
    source.units_read.clear()
    made = make_thumbnails(source, [ThumbnailRequest(r.ordinal, r.sha256) for r in wanted], tmp_path, side=48)
    assert sorted(source.units_read) == sorted({r.ordinal // UNIT_STRIDE for r in wanted})
    assert len(source.units_read) < len(source.units())
    assert made[wanted[0].ordinal].path == made[wanted[1].ordinal].path, "identical bytes, one thumbnail"
    assert len(list(tmp_path.rglob("*.jpg"))) == 2


def test_thumbnails_use_the_run_s_decode_limits(real_photo, tmp_path):
    """A run that accepted 12-px images (default limit 16) must show them, not refuse them."""
    tiny = real_photo.resize((12, 12))
    src = write_folder(tmp_path / "src", {"tiny.png": png(tiny), "tiny.bmp": encode(tiny, "BMP")})
    run_clean(str(src), tmp_path / "out", CleanOptions(limits=DecodeLimits(min_side=8)))
    write_cluster_report(tmp_path / "out")
    [(_, figures)] = ReportPage(tmp_path / "out" / "report.html").clusters
    assert len(figures) == 2 and all(f["src"] for f in figures)


def test_near_duplicates_show_their_kind_distance_and_tags(fresh_run):
    """The columns the near-duplicate search and the copyright/watermark stages add, as they will look."""
    rows = manifest(fresh_run)
    largest = max(clusters_in_manifest(rows).values(), key=len)
    copies = [m["key"] for m in largest if m["key"] != m["keeper_key"]]
    planted = {copies[0]: ("hash", 6.0), copies[1]: ("embedding", 0.0314)}
    for row in rows:
        row["dup_kind"], row["distance"] = planted.get(row["key"], (row["dup_kind"], row["distance"]))
        row["copyright_marked"] = row["key"] == copies[0]
        row["visible_mark_score"] = 0.87 if row["key"] == copies[0] else None
        row["watermark"] = "stdm:00ff" if row["key"] == copies[1] else ""
    pq.write_table(pa.Table.from_pylist(rows), fresh_run / "manifest.parquet")
    write_cluster_report(fresh_run)
    page = ReportPage(fresh_run / "report.html")
    figures = page.clusters[0][1]
    assert [f["key"] for f in figures[:3]] == [largest[0]["keeper_key"], copies[1], copies[0]]
    assert "embedding cosine 0.969" in figures[1]["text"] and "watermarked" in figures[1]["text"]
    assert "perceptual hash within 6 bits" in figures[2]["text"]
    assert "\u00a9 marked" in figures[2]["text"] and "mark 0.87" in figures[2]["text"]
    assert "exact copy" in figures[3]["text"] and "marked" not in figures[3]["text"]
    exact = sum(r["status"] == "dropped" and r["dup_kind"] == "exact" for r in rows)
    assert f"dropped by kind: embedding 1, exact {exact}, hash 1" in (fresh_run / "report.html").read_text()


def test_members_beyond_the_limit_are_counted_not_lost(fresh_run):
    write_cluster_report(fresh_run, max_members=2)
    page = ReportPage(fresh_run / "report.html")
    largest_id, figures = page.clusters[0]
    assert len(figures) == 2
    assert f"2 more members not shown: rows with cluster_id == {largest_id}" in (fresh_run / "report.html").read_text()


def test_keys_from_users_data_are_escaped(fresh_run):
    write_cluster_report(fresh_run)
    text = (fresh_run / "report.html").read_text()
    page = ReportPage(fresh_run / "report.html")
    assert "script" not in page.tags and "b" not in page.tags
    assert "<script" not in text.lower()
    figures = {f["key"]: f for _, members in page.clusters for f in members}
    assert SCRIPT_KEY in figures and figures[SCRIPT_KEY]["alt"] == SCRIPT_KEY
    assert "copies/it's b.bmp" in figures
    assert QUOTED_SKIPPED_KEY in [row[0] for row in page.rows["skipped"]]


def test_pages_reference_only_their_own_files(fresh_run):
    write_cluster_report(fresh_run, page_size=1, rows_per_page=1)
    pages = all_pages(fresh_run)
    assert len(pages) > 4
    for page in pages:
        assert any(m.get("http-equiv") == "Content-Security-Policy" and "default-src 'none'" in m["content"]
                   for m in page.meta)
        for tag, attribute, url in page.urls:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, f"{page.path.name}: external {tag} {attribute}={url}"
            target = (page.path.parent / unquote(parts.path)).resolve() if parts.path else page.path.resolve()
            assert target.is_relative_to(fresh_run.resolve()) and target.is_file(), f"{page.path.name}: broken {url}"
            if parts.fragment:
                assert parts.fragment in ReportPage(target).ids, f"{page.path.name}: no anchor for {url}"
        text = page.path.read_text()
        assert "http://" not in text and "https://" not in text
        assert "url(" not in text and "@import" not in text and "link" not in page.tags


def test_thumbnails_are_small_jpegs_reused_without_the_source(fresh_run, tmp_path):
    write_cluster_report(fresh_run, thumb_px=64)
    thumbs = sorted((fresh_run / "report" / "thumbs").rglob("*.jpg"))
    members = sum(len(m) for m in clusters_in_manifest(manifest(fresh_run)).values())
    assert 0 < len(thumbs) < members, "byte-identical members share one thumbnail"
    for path in thumbs:
        with Image.open(path) as thumb:
            assert thumb.format == "JPEG" and max(thumb.size) == 64
    source = Path(json.loads((fresh_run / "summary.json").read_text())["source"])
    moved = tmp_path / "moved"
    source.rename(moved)
    try:
        write_cluster_report(fresh_run, thumb_px=64)
        figures = [f for _, ms in ReportPage(fresh_run / "report.html").clusters for f in ms]
        assert all(f["src"] for f in figures), "thumbnails already made need no source"
        assert "not shown" not in (fresh_run / "report.html").read_text()
        write_cluster_report(fresh_run, thumb_px=80)
        figures = [f for _, ms in ReportPage(fresh_run / "report.html").clusters for f in ms]
        assert not any(f["src"] for f in figures)
        assert all("source not available" in f["text"] for f in figures)
        assert f"{members} pictures not shown: source not available" in (fresh_run / "report.html").read_text()
        assert not list((fresh_run / "report" / "thumbs").rglob("*-64.jpg")), "unreferenced thumbnails removed"
    finally:
        moved.rename(source)


def test_changed_source_bytes_are_not_shown_as_the_record(fresh_run):
    source = Path(json.loads((fresh_run / "summary.json").read_text())["source"])
    original = (source / "photos/b.png").read_bytes()
    (source / "photos/b.png").write_bytes(png(Image.new("RGB", (64, 64), (255, 0, 0))))
    try:
        write_cluster_report(fresh_run, thumb_px=72)
    finally:
        (source / "photos/b.png").write_bytes(original)
    figures = {f["key"]: f for _, ms in ReportPage(fresh_run / "report.html").clusters for f in ms}
    assert figures["photos/b.png"]["src"] is None
    assert "changed in the source since the run" in figures["photos/b.png"]["text"]
    assert figures["copies/b copy.png"]["src"]


def test_a_folder_without_a_run_is_one_clear_error(tmp_path):
    with pytest.raises(RunError, match="no manifest.parquet; run `dedupkit clean"):
        write_cluster_report(tmp_path)
    (tmp_path / "manifest.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(RunError, match="manifest.parquet: unreadable"):
        write_cluster_report(tmp_path)
    with pytest.raises(RunError, match="page size must be at least 1"):
        write_cluster_report(tmp_path, page_size=0)


def test_clusters_order_keeper_then_least_certain_members():
    table = pa.table({
        "ordinal": [0, 1, 2, 3, 4, 5, 6],
        "key": ["k", "e1", "h1", "x", "h2", "e2", "solo"],
        "status": ["kept", "dropped", "dropped", "dropped", "dropped", "dropped", "kept"],
        "cluster_id": [7, 7, 7, 7, 7, 7, -1],
        "keeper_key": ["k", "k", "k", "k", "k", "k", None],
        "dup_kind": ["exact", "embedding", "hash", "exact", "hash", "embedding", None],
        "distance": [0.0, 0.02, 3.0, 0.0, 8.0, 0.05, None],
    })
    [members] = ordered_clusters(table)
    assert [m["key"] for m in members] == ["k", "e2", "e1", "h2", "h1", "x"]
    assert [m["is_keeper"] for m in members] == [True] + [False] * 5


def test_pager_folds_long_runs_and_disables_ends():
    assert page_count(0, 50) == 1 and page_count(50, 50) == 1 and page_count(51, 50) == 2
    links = pager(1, 40, lambda n: f"p{n}.html")
    assert 'class="disabled">\u2039 prev' in links and 'href="p2.html">next' in links
    assert links.count("\u2026") == 1 and 'href="p40.html"' in links and 'href="p20.html"' not in links
    assert pager(1, 1, str) == ""


BROWSER_PROBE = """<!DOCTYPE html><html><body><pre id="result">not loaded</pre>
<iframe id="report" src="%s" width="1280" height="900"></iframe>
<script>
document.getElementById("report").addEventListener("load", function () {
  var page = this.contentDocument;
  var images = Array.from(page.images).map(function (image) {
    return {src: image.getAttribute("src"), complete: image.complete,
            width: image.naturalWidth, height: image.naturalHeight, shownWidth: image.getBoundingClientRect().width};
  });
  document.getElementById("result").textContent = JSON.stringify(
    {images: images, scripts: page.scripts.length, keepers: page.querySelectorAll("figure.keeper").length});
});
</script></body></html>"""


def render_in_chromium(page: Path, workdir: Path) -> dict:
    """Load `page` in headless Chromium and report what its images decoded to."""
    probe = workdir / "probe.html"
    probe.write_text(BROWSER_PROBE % page.resolve().as_uri())
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={workdir / 'profile'}", "--allow-file-access-from-files",
        "--virtual-time-budget=15000", "--dump-dom", probe.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    dom = done.stdout
    start, end = dom.find('<pre id="result">'), dom.find("</pre>")
    assert start >= 0, f"chromium printed no page (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html.unescape(dom[start + len('<pre id="result">') : end]))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make installs it)")
def test_thumbnails_render_in_headless_chromium(fresh_run, tmp_path):
    write_cluster_report(fresh_run, page_size=3, thumb_px=96)
    for page_path in (fresh_run / "report.html", fresh_run / "report" / "clusters-0002.html"):
        page = ReportPage(page_path)
        expected = [f["src"] for _, members in page.clusters for f in members]
        assert expected and all(expected)
        seen = render_in_chromium(page_path, tmp_path)
        assert [image["src"] for image in seen["images"]] == expected
        for image in seen["images"]:
            assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
            assert max(image["width"], image["height"]) <= 96 and image["shownWidth"] > 0
        assert seen["scripts"] == 0
        assert seen["keepers"] == len(page.clusters)
