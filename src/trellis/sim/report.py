"""The experiment report as a page: tables, per-seed charts (ECharts), HTML export.

The exported file is self-contained (ECharts inlined), so it can be mailed or
archived; the dashboard serves the same template with ECharts from its static folder.
"""

from __future__ import annotations

import math
from pathlib import Path

import jinja2

from trellis.sim.experiment import Comparison, ExperimentReport
from trellis.sim.stats import Interval

__all__ = ["render_report"]

_TEMPLATES = Path(__file__).parents[1] / "ui" / "templates"
_ECHARTS = Path(__file__).parents[1] / "ui" / "static" / "vendor" / "echarts.min.js"
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
)


def _nan(value: float | None) -> bool:
    return value is None or math.isnan(value)


def _hours(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.1f} h"


def _number(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3g}"


def _share(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value * 100:.0f} %"


def _interval(value: Interval) -> str:
    if _nan(value.mean):
        return "–"
    return f"{value.mean:.3g} [{value.low:.3g}, {value.high:.3g}]"


def _verdict(c: Comparison) -> str:
    d = c.difference
    if _nan(d.mean):
        return "not comparable"
    if d.low <= 0 <= d.high:
        return "no clear difference"
    b_higher = d.low > 0
    better = b_higher == (c.better == "higher")
    word = "better" if better else "worse"
    return f'<span class="{word}">B {word}</span>'


def render_report(report: ExperimentReport, inline_echarts: bool = True, nonce: str = "") -> str:
    """The report page; ``inline_echarts`` embeds the chart library (HTML export); ``nonce``
    lets its inline script run under the dashboard's Content-Security-Policy."""
    script = ""
    if inline_echarts:
        try:
            script = _ECHARTS.read_text(encoding="utf-8").replace("</script", "<\\/script")
        except OSError:
            raise RuntimeError(
                f"{_ECHARTS} is missing: run `make assets` (npm ci + scripts/copy_assets.py)"
            ) from None
    charts = [
        {
            "figure": c.figure,
            "seeds": report.seeds,
            "a": [None if _nan(v) else round(v, 4) for v in c.a],
            "b": [None if _nan(v) else round(v, 4) for v in c.b],
        }
        for c in report.comparisons
    ]
    return _env.get_template("experiment_report.html").render(
        report=report,
        charts=charts,
        echarts_inline=script,
        echarts_src="/static/vendor/echarts.min.js",
        hours=_hours,
        number=_number,
        share=_share,
        interval=_interval,
        verdict=_verdict,
        nonce=nonce,
    )
