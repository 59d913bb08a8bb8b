"""A histogram drawn with plotext from counts binned in SQL (engine.analysis.histograms): a few dozen bars at
most, so a million-example run replots as fast as a small one (FIELD-NOTES: plotext's cost grows with points)."""

from __future__ import annotations

from typing import Any

from engine.analysis.histograms import Histogram
from tui_app.widgets import Plot


class HistogramPlot(Plot):
    DEFAULT_CSS = """
    HistogramPlot { height: 1fr; min-height: 5; }
    """

    def __init__(self, metric: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self.histogram: Histogram | None = None

    def set_histogram(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self.replot()

    def draw(self, plt: Any) -> None:
        hist = self.histogram
        plt.title(self.metric if hist is None else f"{self.metric} ({hist.total:,})")
        if hist is None or not hist.counts:
            return
        centres = hist.centres()
        width = (hist.hi - hist.lo) / len(hist.counts)
        plt.bar(centres, hist.counts, width=width * 0.9, marker="sd", color="cyan")
        plt.xlim(hist.lo, hist.hi)
        plt.yticks([])  # the counts are in the bars' heights; the ticks would take the narrow panel's width
        plt.xticks([round(hist.lo + width / 2, 2), round(hist.hi - width / 2, 2)])
