"""report.json and a self-contained report.html (plots embedded) for a verify run."""

from __future__ import annotations

import base64
import html
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from dedupkit.verify.measure import NEARER_THAN_MOST_REAL, Measurement, SetMeasurement

GRID_PAIRS = 12


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_distance_histograms(measurement: Measurement, path: Path) -> Path:
    """Nearest-neighbour distance of every set of generations and of the real control."""
    plt = _matplotlib()
    figure, axis = plt.subplots(figsize=(7, 3.6), dpi=110)
    everything = [m for m in measurement.sets.values()] + ([measurement.control] if measurement.control else [])
    all_distances = np.concatenate([m.neighbours.nearest_distance for m in everything])
    bins = np.linspace(0, max(float(all_distances.max()), measurement.criterion.max_distance) * 1.02, 60)
    for item in everything:
        style = {"linestyle": "--", "color": "black"} if item is measurement.control else {}
        axis.hist(item.neighbours.nearest_distance, bins=bins, histtype="step", linewidth=1.6, label=item.name, **style)
    if measurement.criterion.mode in ("absolute", "both"):
        axis.axvline(measurement.criterion.max_distance, color="red", linewidth=1, label="replica threshold")
    axis.set_xlabel("normalized l2 to the nearest training image")
    axis.set_ylabel("images")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def most_replicated(item: SetMeasurement, limit: int = GRID_PAIRS) -> list[tuple[int, int, int]]:
    """(generation, training image, copies) for the training images copied most often,
    each shown with its closest generation."""
    flagged = np.flatnonzero(item.flags)
    if len(flagged) == 0:
        return []
    targets = item.neighbours.nearest_index[flagged]
    counts = Counter(int(t) for t in targets)
    pairs = []
    for target, copies in counts.most_common(limit):
        candidates = flagged[targets == target]
        best = candidates[np.argmin(item.neighbours.nearest_distance[candidates])]
        pairs.append((int(best), target, copies))
    return pairs


def plot_replica_grid(item: SetMeasurement, measurement: Measurement, path: Path) -> Path | None:
    """Carlini et al. Figure 1: generations (top) above the training image they copy (bottom)."""
    pairs = most_replicated(item)
    if not pairs:
        return None
    plt = _matplotlib()
    figure, axes = plt.subplots(2, len(pairs), figsize=(1.25 * len(pairs), 3.0), dpi=110, squeeze=False)
    reference = measurement.reference.images
    for column, (generation, target, copies) in enumerate(pairs):
        for row, (images, index) in enumerate(((item.generations, generation), (reference, target))):
            chw = images.pixels[index]
            axes[row][column].imshow(chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255)
            axes[row][column].set_xticks([])
            axes[row][column].set_yticks([])
        axes[0][column].set_title(f"x{copies}  d={item.neighbours.nearest_distance[generation]:.3f}", fontsize=7)
        axes[1][column].set_xlabel(reference.keys[target][-14:], fontsize=6)
    axes[0][0].set_ylabel("generated", fontsize=8)
    axes[1][0].set_ylabel("training", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _criterion_text(measurement: Measurement) -> str:
    used = measurement.criterion
    text = {
        "absolute": f"nearest normalized l2 < {used.max_distance:.4f}",
        "relative": f"nearest / mean of {used.n_neighbours} nearest < {used.alpha:.3f}",
        "both": f"nearest normalized l2 < {used.max_distance:.4f} and nearest / mean of {used.n_neighbours} nearest < {used.alpha:.3f}",
    }[used.mode]
    if used != measurement.configured_criterion:
        text += " (tightened so that no held-out real image is flagged)"
    return text + f"; tiles {used.tile_grid}x{used.tile_grid}"


def build_report(measurement: Measurement, extra: dict | None = None) -> dict:
    """The JSON-ready report: criterion, control, and one summary per set of generations."""
    report = {
        "criterion": {
            "used": measurement.criterion.__dict__ | {},
            "configured": measurement.configured_criterion.__dict__ | {},
            "calibrated": measurement.criterion != measurement.configured_criterion,
            "description": _criterion_text(measurement),
        },
        "reference": {
            "distinct_training_images": len(measurement.reference.images),
            "raw_training_images": sum(measurement.reference.copy_counts.values()),
            "duplicated_groups": sum(1 for c in measurement.reference.copy_counts.values() if c > 1),
        },
        "control": measurement.control.summary if measurement.control else None,
        "arms": {name: item.summary for name, item in measurement.sets.items()},
    }
    names = list(measurement.sets)
    if len(names) > 1:
        baseline = measurement.sets[names[0]].summary["distinct_groups_replicated"]
        for name in names[1:]:
            arm = measurement.sets[name].summary["distinct_groups_replicated"]
            measurement.sets[name].summary[f"reduction_vs_{names[0]}"] = (1 - arm / baseline) if baseline else None
    if extra:
        report.update(extra)
    return report


def _embed_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _rate_cell(rate: dict) -> str:
    return f"{rate['count']}/{rate['total']} = {100 * rate['rate']:.1f} % [{100 * rate['low']:.1f}, {100 * rate['high']:.1f}]"


def write_report(measurement: Measurement, out_dir: str | os.PathLike, extra: dict | None = None) -> dict:
    """Write report.json, report.html and the PNG plots into `out_dir`; return the report."""
    out = Path(out_dir)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    report = build_report(measurement, extra)
    histogram = plot_distance_histograms(measurement, plots / "nearest_distance.png")
    grids = {name: plot_replica_grid(item, measurement, plots / f"replicas_{_slug(name)}.png") for name, item in measurement.sets.items()}
    report["plots"] = {"histogram": str(histogram.relative_to(out))} | {
        f"replicas_{name}": str(path.relative_to(out)) for name, path in grids.items() if path
    }
    temporary = out / "report.json.partial"
    temporary.write_text(json.dumps(report, indent=2, default=_json_default))
    os.replace(temporary, out / "report.json")
    (out / "report.html").write_text(_html(report, measurement, histogram, grids))
    return report


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def _html(report: dict, measurement: Measurement, histogram: Path, grids: dict) -> str:
    rows = []
    entries = list(report["arms"].items()) + ([("held-out real (control)", report["control"])] if report["control"] else [])
    for name, summary in entries:
        embedding = summary.get("embedding", {}).get("above_control_max")
        closer = summary.get("closer_than_any_held_out")
        nearer = summary.get(NEARER_THAN_MOST_REAL)
        watermark = summary.get("watermark", {}).get("marked")
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(cell))}</td>"
                for cell in (
                    name,
                    _rate_cell(summary["replicated"]),
                    summary["distinct_training_images_replicated"],
                    summary["distinct_groups_replicated"],
                    summary["distinct_groups_replicated_that_were_duplicated"],
                    f"{summary['nearest_distance_quantiles']['0.5']:.3f}",
                    _rate_cell(closer) if closer else "-",
                    (f"{_rate_cell(nearer['replicated'])}; {nearer['distinct_groups_replicated_that_were_duplicated']}"
                     " duplicated" if nearer else "-"),
                    _rate_cell(embedding) if embedding else "-",
                    _rate_cell(watermark) if watermark else "-",
                )
            )
            + "</tr>"
        )
    grid_html = "".join(
        f"<h3>{html.escape(name)}</h3>"
        + (f'<img src="{_embed_png(path)}" alt="replicas of {html.escape(name)}">' if path else "<p>no replica</p>")
        for name, path in grids.items()
    )
    extra = {k: v for k, v in report.items() if k not in ("arms", "control", "plots")}
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dedupkit verify</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:75em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:.3em .6em;text-align:left}}pre{{background:#f5f5f5;padding:1em;overflow:auto}}</style>
</head><body>
<h1>Replication of training images, before and after cleaning</h1>
<p>Replica: {html.escape(report['criterion']['description'])}.
Rates with 95 % Wilson intervals. Groups are duplicate groups of the raw data
({report['reference']['raw_training_images']} raw images, {report['reference']['distinct_training_images']} distinct pictures,
{report['reference']['duplicated_groups']} duplicated groups).</p>
<table><tr><th>set</th><th>replicas</th><th>distinct training images copied</th><th>distinct groups copied</th>
<th>of which duplicated in raw</th><th>median nearest distance</th><th>nearer than any held-out real image</th>
<th>nearer than 99 % of held-out real images (the control: 1 % by construction); duplicated groups among them</th>
<th>embedding: above any real image</th><th>watermarked</th></tr>
{''.join(rows)}</table>
<h2>Nearest-neighbour distance</h2><img src="{_embed_png(histogram)}" alt="histogram">
<h2>Most-replicated training images</h2>{grid_html}
<h2>Settings</h2><pre>{html.escape(json.dumps(extra, indent=2, default=_json_default))}</pre>
</body></html>
"""
