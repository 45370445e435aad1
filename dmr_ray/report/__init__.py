"""The report of a Deep MR audit: figures (matplotlib) and a self-contained HTML page.

:func:`write_report` writes ``<out>/report/index.html`` and its PNG figures; the figure
functions return :class:`matplotlib.figure.Figure` objects and can be used on their own.
"""

from dmr_ray.report.data import CalibrationCurves, ScatterData
from dmr_ray.report.figures import calibration_figure, forest_figure, heatmap_figure, scatter_figure
from dmr_ray.report.html import REPORT_VERSION, write_report

__all__ = [
    "REPORT_VERSION",
    "CalibrationCurves",
    "ScatterData",
    "calibration_figure",
    "forest_figure",
    "heatmap_figure",
    "scatter_figure",
    "write_report",
]
