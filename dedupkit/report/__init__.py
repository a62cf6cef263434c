"""Human-facing HTML reports: the duplicate gallery of a run (and, in verify, before/after)."""

from dedupkit.report.clusters import write_cluster_report

__all__ = ["write_cluster_report"]
