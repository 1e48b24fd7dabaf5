"""The landing page at ``/``: each model's latest window and small charts of the last ones.

Rendered on the server as one HTML document with inline SVG charts: no script, no
stylesheet or font from elsewhere, so it works offline and behind any proxy. It
refreshes itself (``<meta http-equiv="refresh">``) about once per window. Every name
on it (model, class, feature) is user data and is HTML-escaped.

The charts read each monitor's :class:`~.history.WindowHistory` (the last closed
windows), the same records as the history files and the windows endpoint.
"""

from __future__ import annotations

import html
import math
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._version import __version__

__all__ = ["render_landing", "svg_chart", "CHART_WIDTH", "CHART_HEIGHT", "MAX_CLASS_LINES"]

CHART_WIDTH = 320
CHART_HEIGHT = 120
#: Classes drawn in the class-ratio chart at most (the largest in the latest window).
MAX_CLASS_LINES = 8
#: Features listed as most drifted at most.
MAX_DRIFTED = 5
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
_STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}
h2{margin-top:1.5em;border-bottom:1px solid #ccc}
table.latest{border-collapse:collapse;margin:.5em 0}
table.latest td,table.latest th{padding:2px 10px;text-align:left;border-bottom:1px solid #eee}
.charts{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}figcaption{font-size:90%;color:#555}
svg.chart{background:#fafafa;border:1px solid #ddd}
.legend span{margin-right:8px;font-size:85%}"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def svg_chart(name: str, series: Sequence[Tuple[str, Sequence[Optional[float]]]],
              caption: str, width: int = CHART_WIDTH, height: int = CHART_HEIGHT) -> str:
    """One chart of values in [0, 1], a polyline per series (None leaves a gap).

    ``data-chart`` names the chart and ``data-points`` says how many points it draws,
    so that a reader (or a browser test) can tell it from an empty one.
    """
    pad = 4
    points_drawn = 0
    lines: List[str] = []
    legend: List[str] = []
    for index, (label, values) in enumerate(series):
        color = _COLORS[index % len(_COLORS)]
        step = (width - 2 * pad) / max(len(values) - 1, 1)
        runs: List[List[str]] = [[]]
        for position, value in enumerate(values):
            if value is None or not math.isfinite(value):
                runs.append([])
                continue
            x = pad + position * step
            y = pad + (1.0 - min(max(value, 0.0), 1.0)) * (height - 2 * pad)
            runs[-1].append(f"{x:.1f},{y:.1f}")
            points_drawn += 1
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                lines.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
            elif run:
                lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                             f'points="{" ".join(run)}"><title>{_e(label)}</title></polyline>')
        if len(series) > 1:
            legend.append(f'<span style="color:{color}">&#9632; {_e(label)}</span>')
    grid = "".join(
        f'<line x1="0" x2="{width}" y1="{pad + f * (height - 2 * pad):.1f}" '
        f'y2="{pad + f * (height - 2 * pad):.1f}" stroke="#e5e5e5"/>' for f in (0, 0.5, 1))
    labels = (f'<text x="{width - 2}" y="12" font-size="9" text-anchor="end" '
              f'fill="#999">1</text><text x="{width - 2}" y="{height - 6}" font-size="9" '
              f'text-anchor="end" fill="#999">0</text>')
    svg = (f'<svg class="chart" data-chart="{_e(name)}" data-points="{points_drawn}" '
           f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(caption)}">'
           f'{grid}{labels}{"".join(lines)}</svg>')
    legend_html = f'<div class="legend">{"".join(legend)}</div>' if legend else ""
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption>{legend_html}</figure>"


def _stat(record: Dict[str, Any], key: str, stat: str = "median") -> Optional[float]:
    stats = record.get(key)
    return stats.get(stat) if isinstance(stats, dict) else None


def _latest_table(record: Dict[str, Any]) -> str:
    end = record.get("window_end") or 0.0
    rows = [
        ("Window end (UTC)", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(end))),
        ("Window length", f"{_fmt(record.get('window_seconds'), 1)} s"),
        ("Rows (sampled)", f"{record.get('rows')} ({record.get('sampled_rows')})"),
        ("pred1 median", _fmt(_stat(record, "pred1"))),
        ("spread12 median", _fmt(_stat(record, "spread12"))),
        ("Labeled rows", str(record.get("labeled_rows", 0))),
        ("Accuracy", _fmt(record.get("accuracy"))),
        ("F1 macro", _fmt(record.get("f1_macro"))),
    ]
    ratios = record.get("class_ratio") or {}
    top = sorted(ratios.items(), key=lambda item: -(item[1] or 0.0))[:MAX_CLASS_LINES]
    if top:
        rows.append(("Predicted classes", ", ".join(
            f"{name}: {_fmt(ratio, 2)}" for name, ratio in top)))
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="latest">{cells}</table>'


def _drifted(record: Dict[str, Any]) -> str:
    """The most drifted features, when the window has drift scores (branch `drift`)."""
    drift = record.get("drift")
    if not isinstance(drift, dict) or not drift:
        return ""
    top = sorted(((score, name) for name, score in drift.items() if score is not None),
                 reverse=True)[:MAX_DRIFTED]
    items = "".join(f"<li>{_e(name)}: {_fmt(score)}</li>" for score, name in top)
    return f'<div class="drift"><h3>Most drifted features</h3><ol>{items}</ol></div>'


def _model_section(model: str, window_seconds: float, records: List[Dict[str, Any]],
                   anchor: str) -> str:
    head = (f'<section class="model" id="{anchor}" data-model="{_e(model)}" '
            f'data-windows="{len(records)}"><h2>{_e(model)}</h2>')
    if not records:
        return (head + f"<p>No window closed yet (windows last {window_seconds:g} s).</p>"
                "</section>")
    latest = records[-1]
    ratios = latest.get("class_ratio") or {}
    classes = [name for name, _ in sorted(ratios.items(),
                                          key=lambda item: -(item[1] or 0.0))]
    # The largest in the latest window, drawn in class order: a class keeps its color.
    order = {name: position for position, name in enumerate(ratios)}
    shown = sorted(classes[:MAX_CLASS_LINES], key=order.__getitem__)
    class_series = [(name, [(r.get("class_ratio") or {}).get(name) for r in records])
                    for name in shown]
    more = len(classes) - len(shown)
    class_caption = "Predicted class ratio" + (f" (top {len(shown)}, {more} more)"
                                               if more > 0 else "")
    charts = [
        svg_chart("pred1-median", [("pred1 median", [_stat(r, "pred1") for r in records])],
                  "pred1 median"),
        svg_chart("spread12-median",
                  [("spread12 median", [_stat(r, "spread12") for r in records])],
                  "spread12 median"),
        svg_chart("class-ratio", class_series, class_caption),
        svg_chart("accuracy", [("accuracy", [r.get("accuracy") for r in records])],
                  "Accuracy (labeled rows)"),
    ]
    return (head + _latest_table(latest) + _drifted(latest)
            + f'<p>Last {len(records)} windows:</p><div class="charts">{"".join(charts)}'
            "</div></section>")


def render_landing(registry: Any, prefix: str = "/") -> bytes:
    """The landing page of the monitors on `registry` (``prefix``: where the app is
    mounted, ending with ``/``)."""
    from .collector import registered_monitors

    monitors = registered_monitors(registry)
    sections: List[str] = []
    shortest = 60.0
    for position, monitor in enumerate(monitors):
        history = getattr(monitor, "history", None)
        try:
            monitor.tick()  # as a scrape does: a due window is closed and recorded
        except Exception:  # noqa: BLE001 - the page must render anyway
            pass
        records = history.records() if history is not None else []
        shortest = min(shortest, float(monitor.window_seconds))
        sections.append(_model_section(monitor.model, monitor.window_seconds, records,
                                       f"model-{position}"))
    refresh = max(1, min(60, int(math.ceil(shortest))))
    links = "".join(f'<li><a href="#model-{i}">{_e(m.model)}</a></li>'
                    for i, m in enumerate(monitors))
    body = "".join(sections) if sections else "<p>No model is monitored yet.</p>"
    metrics = _e(prefix + "metrics")
    page = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="{refresh}">'
            f"<title>mlwatcher-exporter</title><style>{_STYLE}</style></head>"
            f"<body><h1>mlwatcher-exporter {_e(__version__)}</h1>"
            "<p>Statistics of machine-learning classifiers in production, for Prometheus."
            f' <a href="{metrics}">Metrics</a></p>'
            f'{"<ul>" + links + "</ul>" if len(monitors) > 1 else ""}{body}'
            f'<p><a href="{metrics}">Metrics</a> &middot; refreshed every {refresh} s</p>'
            "</body></html>\n")
    return page.encode("utf-8")
