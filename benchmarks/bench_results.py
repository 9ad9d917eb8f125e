"""The figures of bench.py: a measure's samples and its bar, the markdown table, the chart."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Bar:
    """A performance bar: ``ratio_max``/``ratio_min`` on ours/ref, ``abs_max``/``abs_min``."""

    kind: str
    limit: float

    def met(self, ours: float, ref: float | None) -> bool:
        """True when the median figures meet the bar."""
        if self.kind.startswith("ratio"):
            assert ref
            value = ours / ref
        else:
            value = ours
        return value <= self.limit if self.kind.endswith("max") else value >= self.limit

    def text(self, unit: str) -> str:
        """The bar as written in the table."""
        sign = "<=" if self.kind.endswith("max") else ">="
        if self.kind.startswith("ratio"):
            return f"{sign} {self.limit:g}x"
        return f"{sign} {self.limit:g} {unit}"


@dataclass
class Row:
    """One measure: samples of ours and of the reference, its unit and bar."""

    measure: str
    unit: str
    ours: list[float]
    ref: list[float] = field(default_factory=list)
    bar: Bar | None = None

    @property
    def ours_median(self) -> float:
        """Median of our samples."""
        return statistics.median(self.ours)

    @property
    def ref_median(self) -> float | None:
        """Median of the reference samples (None without a reference)."""
        return statistics.median(self.ref) if self.ref else None

    @property
    def ratio(self) -> float | None:
        """ours / reference of the medians."""
        ref = self.ref_median
        return self.ours_median / ref if ref else None

    @property
    def met(self) -> bool | None:
        """Bar met (None: no bar)."""
        return self.bar.met(self.ours_median, self.ref_median) if self.bar else None

    def cells(self) -> list[str]:
        """The row's table cells."""
        ratio = self.ratio
        met = {None: "", True: "met", False: "**not met**"}[self.met]
        return [self.measure, f"{fmt(self.ours_median)} {self.unit}",
                f"{fmt(self.ref_median)} {self.unit}" if self.ref else "-",
                f"{ratio:.2f}x" if ratio is not None else "-",
                self.bar.text(self.unit) if self.bar else "-", met]

    def chart_point(self) -> tuple[str, float, float | None] | None:
        """(label, value, threshold) for the ratio chart, None when nothing to plot."""
        ratio = self.ratio
        if self.bar is None:
            return (self.measure, ratio, None) if ratio else None
        if self.bar.kind.startswith("ratio"):
            assert ratio is not None
            return self.measure, ratio, self.bar.limit
        if ratio is not None:
            return self.measure, ratio, self.bar.limit / (self.ref_median or 1)
        return f"{self.measure} (/ bar)", self.ours_median / self.bar.limit, 1.0


def fmt(value: float | None) -> str:
    """A figure with 3 significant digits or so."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(rows: Sequence[Row]) -> str:
    """The markdown table of ``rows``."""
    head = ["measure", "ours (median)", "reference (median)", "ratio", "bar", ""]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def write_chart(rows: Sequence[Row], path: Path) -> None:
    """A horizontal bar chart of the ratios (log scale), each bar's threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    points = [(row, p) for row in rows if (p := row.chart_point()) is not None]
    if not points:
        return
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(points) + 1.6))
    for y, (row, (_label, value, threshold)) in enumerate(points):
        color = {True: "tab:green", False: "tab:red", None: "tab:gray"}[row.met]
        ax.barh(y, value, color=color, height=0.6)
        ax.text(value * 1.03, y, f"{value:.2f}", va="center", fontsize=8)
        if threshold is not None:
            ax.plot([threshold, threshold], [y - 0.4, y + 0.4], color="black", linewidth=2)
    ax.axvline(1.0, color="gray", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(points)), [label for _, (label, _, _) in points], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("ours / reference (black tick: the bar; green met, red not met, gray no bar)")
    ax.set_title("nixshard vs nix copy file:// + nginx")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
