"""Records -> ``REPORT.md`` with the study's tables beside ours, intervals, paired tests and figures.

The sweep calls :func:`write_report` at the end of a run; ``python -m raygenre.report RUN_DIR``
does the same from the command line.
"""

from raygenre.report.document import REPORT_NAME, build_report, default_out_dir, write_report

__all__ = ["REPORT_NAME", "build_report", "default_out_dir", "write_report"]
