"""Results a person reads: metrics.csv, summary.json, figures, report.html, viewer colour tables."""

from .builder import FIGURES_DIR, REPORT_FILE, ReportBuilder, report_for
from .tables import format_table, write_metrics_csv, write_summary_json
from .viewer_tables import write_viewer_tables

__all__ = ["ReportBuilder", "report_for", "REPORT_FILE", "FIGURES_DIR", "format_table",
           "write_metrics_csv", "write_summary_json", "write_viewer_tables"]
