"""Build the Grafana dashboards of mlwatcher-exporter from one description.

    python dashboards/generate.py          # rewrite dashboards/*.json
    python dashboards/generate.py --check  # exit 1 if the JSON files are out of date

The JSON files are what Grafana loads (dashboards/provisioning/); this script only keeps
their ~60 panels consistent (datasource, units, legends, layout). Edit it, run it, commit
both. tests/test_dashboards.py fails when they disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39  # Grafana 10.3+ / 11.x
DS = {"type": "prometheus", "uid": "${datasource}"}

# Selectors shared by the overview panels.
M = 'model=~"$model"'
MC = 'model=~"$model",class=~"$class"'
MF = 'model=~"$model",feature=~"$feature"'
GUARD = "mlwatcher:guard_min_sampled_rows"
# Fleet series keep every label but instance: the model and the deployment labels of
# the scrape config (env, cluster...).
FLEET_LEGEND = "{{model}} {{env}}"

# Colors of the overrides.
BAND_STYLE = [
    {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [6, 4]}},
    {"id": "custom.lineWidth", "value": 1},
]
GUARD_STYLE = [
    {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
    {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 6]}},
    {"id": "custom.lineWidth", "value": 2},
    {"id": "custom.fillOpacity", "value": 0},
]


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False,
           fmt: str = "time_series") -> Dict[str, Any]:
    """A Prometheus query of a panel."""
    t: Dict[str, Any] = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if fmt != "time_series":
        t["format"] = fmt
    return t


def targets(*queries: tuple) -> List[Dict[str, Any]]:
    """Targets from (expr, legend[, instant]) tuples, refIds A, B, C..."""
    return [target(q[0], q[1], chr(ord("A") + i), *q[2:]) for i, q in enumerate(queries)]


def thresholds(*steps: tuple) -> Dict[str, Any]:
    """Absolute thresholds from (color, value) steps; the first value is the base."""
    return {"mode": "absolute",
            "steps": [{"color": c, "value": v} for c, v in steps]}


def by_regex(pattern: str, properties: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"matcher": {"id": "byRegexp", "options": pattern}, "properties": properties}


def by_name(name: str, properties: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"matcher": {"id": "byName", "options": name}, "properties": properties}


def timeseries(title: str, description: str, tgts: List[Dict[str, Any]], unit: str = "short",
               w: int = 12, h: int = 8, minimum: Optional[float] = None,
               maximum: Optional[float] = None, thresh: Optional[Dict[str, Any]] = None,
               thresholds_style: str = "off", stack: bool = False,
               overrides: Optional[List[Dict[str, Any]]] = None, decimals: Optional[int] = None,
               repeat: Optional[str] = None, legend: str = "table") -> Dict[str, Any]:
    """A time series panel: lines, a table legend with last/min/max, a shared tooltip."""
    defaults: Dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "line",
            "lineInterpolation": "stepAfter",
            "lineWidth": 2,
            "fillOpacity": 40 if stack else 0,
            "showPoints": "never",
            "spanNulls": False,
            "axisPlacement": "auto",
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": thresholds_style},
        },
        "thresholds": thresh or thresholds(("green", None)),
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if decimals is not None:
        defaults["decimals"] = decimals
    panel: Dict[str, Any] = {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {
            "legend": {"showLegend": True, "displayMode": legend, "placement": "bottom",
                       "calcs": ["lastNotNull", "min", "max"] if legend == "table" else []},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": tgts,
    }
    if repeat:
        panel["repeat"] = repeat
        panel["repeatDirection"] = "h"
        panel["maxPerRow"] = 2
    return panel


def stat(title: str, description: str, tgts: List[Dict[str, Any]], unit: str = "short",
         thresh: Optional[Dict[str, Any]] = None, w: int = 4, h: int = 5,
         decimals: Optional[int] = None, color_mode: str = "background") -> Dict[str, Any]:
    """A stat panel showing the last value of each series."""
    defaults: Dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": thresh or thresholds(("blue", None)),
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": color_mode,
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "value_and_name",
            "wideLayout": True,
            "showPercentChange": False,
        },
        "targets": tgts,
    }


def bargauge(title: str, description: str, tgts: List[Dict[str, Any]], unit: str = "short",
             thresh: Optional[Dict[str, Any]] = None, w: int = 12, h: int = 8,
             minimum: Optional[float] = None, maximum: Optional[float] = None,
             decimals: Optional[int] = None) -> Dict[str, Any]:
    """A horizontal bar gauge of the current values (instant queries)."""
    defaults: Dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": thresh or thresholds(("blue", None)),
    }
    for key, value in (("min", minimum), ("max", maximum), ("decimals", decimals)):
        if value is not None:
            defaults[key] = value
    return {
        "type": "bargauge",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "valueMode": "color",
            "showUnfilled": True,
            "namePlacement": "left",
            "sizing": "auto",
            "minVizHeight": 16,
            "minVizWidth": 8,
            "maxVizHeight": 300,
        },
        "targets": tgts,
    }


def table(title: str, description: str, tgts: List[Dict[str, Any]],
          exclude: List[str], rename: Dict[str, str],
          overrides: Optional[List[Dict[str, Any]]] = None, w: int = 24,
          h: int = 6) -> Dict[str, Any]:
    """A table of instant queries merged on their labels, one row per series."""
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {
            "defaults": {"custom": {"align": "auto", "cellOptions": {"type": "auto"}},
                         "thresholds": thresholds(("green", None))},
            "overrides": overrides or [],
        },
        "options": {"showHeader": True, "cellHeight": "sm",
                    "footer": {"show": False, "reducer": ["sum"], "fields": ""}},
        "targets": tgts,
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {name: True for name in exclude},
                "indexByName": {},
                "renameByName": rename,
            }},
        ],
    }


def heatmap(title: str, description: str, expr: str, w: int = 12, h: int = 8,
            repeat: Optional[str] = None) -> Dict[str, Any]:
    """A heatmap of histogram buckets (one column per time step, one row per bucket)."""
    panel: Dict[str, Any] = {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": {"custom": {"hideFrom": {"legend": False,
                                                             "tooltip": False,
                                                             "viz": False},
                                                "scaleDistribution": {"type": "linear"}}},
                        "overrides": []},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5,
                      "fill": "dark-orange", "reverse": False, "scale": "exponential"},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-9},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto", "value": "Rows"},
            "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": True},
            "yAxis": {"axisPlacement": "left", "unit": "percentunit", "reverse": False,
                      "axisLabel": "pred1 bucket (upper bound)"},
            "cellValues": {"unit": "short"},
        },
        "targets": [target(expr, "{{le}}", fmt="heatmap")],
    }
    if repeat:
        panel["repeat"] = repeat
        panel["repeatDirection"] = "h"
        panel["maxPerRow"] = 2
    return panel


def row(title: str) -> Dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"w": 24, "h": 1}}


def layout(panels: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Give every panel an id and an x/y position, filling rows of 24 columns."""
    x = y = line_height = 0
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
        grid = panel["gridPos"]
        if panel["type"] == "row" or x + grid["w"] > 24:
            y += line_height
            x = line_height = 0
        grid["x"], grid["y"] = x, y
        x += grid["w"]
        line_height = max(line_height, grid["h"])
        if panel["type"] == "row":
            y += grid["h"]
            x = line_height = 0
    return panels


def datasource_variable() -> Dict[str, Any]:
    return {"type": "datasource", "name": "datasource", "label": "Data source",
            "query": "prometheus", "current": {}, "hide": 0, "includeAll": False,
            "multi": False, "options": [], "refresh": 1, "regex": "", "skipUrlSync": False}


def query_variable(name: str, label: str, query: str, multi: bool = True,
                   include_all: bool = True, description: str = "") -> Dict[str, Any]:
    """A variable filled by `label_values(...)` from Prometheus, refreshed on time change."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,
        "datasource": DS,
        "definition": query,
        "query": {"qryType": 1, "query": query,
                  "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "current": {},
        "hide": 0,
        "includeAll": include_all,
        "multi": multi,
        "options": [],
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }


def dashboard(uid: str, title: str, description: str, variables: List[Dict[str, Any]],
              panels: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "annotations": {"list": [{
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }]},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [{"type": "dashboards", "tags": ["mlwatcher"], "asDropdown": False,
                   "title": "MLWatcher dashboards", "includeVars": True, "keepTime": True,
                   "icon": "external link", "targetBlank": False, "tooltip": "",
                   "url": ""}],
        "panels": layout(panels),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["mlwatcher", "machine-learning"],
        "templating": {"list": [datasource_variable()] + variables},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# ---------------------------------------------------------------------------------------
# MLWatcher / Model overview
# ---------------------------------------------------------------------------------------

def overview() -> Dict[str, Any]:
    prob = dict(unit="percentunit", minimum=0, maximum=1)
    band_overrides = [by_regex(".*(lower|upper|1d avg|10m avg| replica).*", BAND_STYLE)]
    panels: List[Dict[str, Any]] = [
        row("Overview"),
        stat("Rows in last window", "Rows observed in the last completed window, before "
             "sampling (mlwatcher_window_rows).",
             targets((f"mlwatcher_window_rows{{{M}}}", "{{model}}")), w=4),
        stat("Sampled rows", "Rows in the sample the window statistics are computed on. "
             "Alerts stay silent below the sample-size guard (see 'Sample sizes').",
             targets((f"mlwatcher_window_sampled_rows{{{M}}}", "{{model}}")), w=4),
        stat("Median pred1", "Median top-class probability in the last window: how sure "
             "the model is of its typical prediction.",
             targets((f'mlwatcher_pred1{{{M},stat="median"}}', "{{model}}")),
             unit="percentunit", decimals=1,
             thresh=thresholds(("red", None), ("orange", 0.6), ("green", 0.8))),
        stat("Accuracy", "Accuracy on the labeled rows of the last window.",
             targets((f"mlwatcher_accuracy{{{M}}}", "{{model}}")), unit="percentunit",
             decimals=1, thresh=thresholds(("red", None), ("orange", 0.8), ("green", 0.9))),
        stat("Rows per second", "Rows predicted per second over all replicas (5m rate).",
             targets((f"model:mlwatcher_predictions:sum_rate5m{{{M}}}", FLEET_LEGEND)),
             unit="suffix: rows/s", decimals=1),
        stat("Window age", "Seconds since the last completed window ended. The "
             "MLWatcherWindowStalled alert fires past 3 window lengths.",
             targets((f"model:mlwatcher_window_end:age_seconds{{{M}}}", "{{model}}")),
             unit="s", thresh=thresholds(("green", None), ("orange", 300), ("red", 900))),
        table("Monitored models", "One row per model and replica (mlwatcher_model_info).",
              targets((f"mlwatcher_model_info{{{M}}}", "", True, "table")),
              exclude=["Time", "Value", "__name__"],
              rename={"window_seconds": "window (s)", "reservoir_size": "reservoir",
                      "n_classes": "classes"}, h=5),

        row("Fleet (all replicas)"),
        stat("Replicas", "Replicas of each deployment publishing the model "
             "(mlwatcher_model_info counted without instance).",
             targets((f"count without (instance) (mlwatcher_model_info{{{M}}})",
                      FLEET_LEGEND)), w=4, decimals=0),
        stat("Fleet accuracy (5m)", "Accuracy over every labeled row of the last 5 minutes, "
             "all replicas of a deployment together (counters).",
             targets((f"model:mlwatcher_accuracy:ratio_rate5m{{{M}}}", FLEET_LEGEND)),
             unit="percentunit", decimals=1,
             thresh=thresholds(("red", None), ("orange", 0.8), ("green", 0.9)), w=5),
        stat("Fleet median pred1 (5m)", "Median top-class probability over every row of the "
             "last 5 minutes and every replica, from the pred1 histogram.",
             targets((f"model:mlwatcher_prediction_pred1:p50_rate5m{{{M}}}", FLEET_LEGEND)),
             unit="percentunit", decimals=1,
             thresh=thresholds(("red", None), ("orange", 0.6), ("green", 0.8)), w=5),
        stat("Fleet rows in 5 minutes", "Rows and labeled rows counted by all replicas in the "
             "last 5 minutes: the samples behind the fleet's counter-based alerts, which "
             "stay silent under the guard (mlwatcher:guard_min_sampled_rows).",
             targets((f"model:mlwatcher_predictions:increase5m{{{M}}}", FLEET_LEGEND + " rows"),
                     (f"model:mlwatcher_labeled_predictions:increase5m{{{M}}}",
                      FLEET_LEGEND + " labeled")), decimals=0, w=10,
             color_mode="value"),
        timeseries("Fleet accuracy, recall and macro F1",
                   "Accuracy over every labeled row of all replicas (5m rates) with its 1-day "
                   "average (dashed), which MLWatcherAccuracyDropping compares with, and the "
                   "macro F1 of the replicas' last windows weighted by their labeled rows.",
                   targets((f"model:mlwatcher_accuracy:ratio_rate5m{{{M}}}",
                            FLEET_LEGEND + " accuracy"),
                           (f"model:mlwatcher_accuracy:ratio_rate5m_avg1d{{{M}}}",
                            FLEET_LEGEND + " accuracy 1d avg"),
                           (f"model:mlwatcher_f1_macro:weighted_avg{{{M}}}",
                            FLEET_LEGEND + " macro F1 (windows)")),
                   overrides=band_overrides,
                   thresh=thresholds(("red", None), ("orange", 0.8), ("green", 0.9)),
                   thresholds_style="dashed", **prob),
        timeseries("Fleet confidence over every row",
                   "pred1 mean and p10/p50/p90 from the histogram of all replicas (5m rates), "
                   "and the fleet's median spread12 (replicas' last windows, weighted by "
                   "their sampled rows).",
                   targets((f"model:mlwatcher_prediction_pred1:mean_rate5m{{{M}}}",
                            FLEET_LEGEND + " pred1 mean"),
                           (f"model:mlwatcher_prediction_pred1:p10_rate5m{{{M}}}",
                            FLEET_LEGEND + " pred1 p10"),
                           (f"model:mlwatcher_prediction_pred1:p50_rate5m{{{M}}}",
                            FLEET_LEGEND + " pred1 p50"),
                           (f"model:mlwatcher_prediction_pred1:p90_rate5m{{{M}}}",
                            FLEET_LEGEND + " pred1 p90"),
                           (f"model:mlwatcher_spread12_median:weighted_avg{{{M}}}",
                            FLEET_LEGEND + " spread12 median (windows)")),
                   overrides=[by_regex(".*(p10|p90).*", BAND_STYLE)], **prob),
        timeseries("Fleet class shares over every row",
                   "Share of the rows predicted as each class, all replicas (5m rates).",
                   targets((f"model_class:mlwatcher_predicted_class:ratio_rate5m{{{MC}}}",
                            FLEET_LEGEND + " class {{class}}")), **prob),
        timeseries("Fleet sample sizes and the alert guard",
                   "Rows sampled and labeled rows in the replicas' last windows, summed, and "
                   "rows counted in 5 minutes, against the guard (red dashed): the model "
                   "alerts count their sample across the fleet.",
                   targets((f"sum without (instance) (model:mlwatcher_window_sampled_rows:sum"
                            f"{{{M}}})", FLEET_LEGEND + " sampled (windows)"),
                           (f"sum without (instance) (model:mlwatcher_labeled_rows:sum"
                            f"{{{M}}})", FLEET_LEGEND + " labeled (windows)"),
                           (f"model:mlwatcher_labeled_predictions:increase5m{{{M}}}",
                            FLEET_LEGEND + " labeled (5m)"),
                           (GUARD, "alert guard (min sampled rows)")),
                   overrides=[by_name("alert guard (min sampled rows)", GUARD_STYLE)],
                   decimals=0, minimum=0),
        timeseries("Fleet feature mean and std",
                   "Mean and standard deviation of the selected features over the replicas' "
                   "last windows, weighted by their sampled rows (the drift band is drawn in "
                   "'Features').",
                   targets((f'model_feature_stat:mlwatcher_feature:weighted_avg{{{MF},'
                            f'stat=~"mean|std"}}', FLEET_LEGEND + " {{feature}} {{stat}}")),
                   w=24),

        row("Confidence"),
        timeseries("pred1 per window: median and quartiles",
                   "Top-class probability of each row, summarised per window: median (solid) "
                   "with q25/q75 (dashed) per replica, and the fleet's median over every row "
                   "of the last 5 minutes from the histogram (dashed), which "
                   "MLWatcherConfidenceDropping compares with yesterday. A falling median or "
                   "a widening band means the model is less sure.",
                   targets((f'mlwatcher_pred1{{{M},stat="median"}}',
                            "{{model}} {{instance}} median"),
                           (f'mlwatcher_pred1{{{M},stat=~"q25|q75"}}',
                            "{{model}} {{instance}} {{stat}}"),
                           (f"model:mlwatcher_prediction_pred1:p50_rate5m{{{M}}}",
                            "fleet " + FLEET_LEGEND + " median (all rows)")),
                   overrides=[by_regex(".*(q25|q75|fleet).*", BAND_STYLE)], **prob),
        timeseries("spread12 per window: median and quartiles",
                   "Top-1 minus top-2 probability per row, per window. Near 0 the model "
                   "hesitates between two classes (MLWatcherSpread12Collapsing).",
                   targets((f'mlwatcher_spread12{{{M},stat="median"}}',
                            "{{model}} {{instance}} median"),
                           (f'mlwatcher_spread12{{{M},stat=~"q25|q75"}}',
                            "{{model}} {{instance}} {{stat}}"),
                           (f"model:mlwatcher_spread12_median:avg10m{{{M}}}",
                            "fleet " + FLEET_LEGEND + " median 10m avg")),
                   overrides=[by_regex(".*(q25|q75|fleet).*", BAND_STYLE)], **prob),
        timeseries("pred1 and spread12: mean, std, min, max",
                   "The other per-window statistics of pred1 and spread12.",
                   targets((f'mlwatcher_pred1{{{M},stat=~"mean|std|min|max|range|iqr"}}',
                            "{{model}} pred1 {{stat}}"),
                           (f'mlwatcher_spread12{{{M},stat=~"mean|std|min|max|range|iqr"}}',
                            "{{model}} spread12 {{stat}}")), **prob),
        timeseries("pred1 quantiles over all rows (all replicas)",
                   "From the mlwatcher_prediction_pred1 histogram summed over replicas "
                   "(5m rates): every row counts, not only the window's sample. Quantiles "
                   "interpolate inside a bucket: the bucket edges limit their precision.",
                   targets((f"model:mlwatcher_prediction_pred1:p50_rate5m{{{M}}}",
                            FLEET_LEGEND + " p50"),
                           (f"model:mlwatcher_prediction_pred1:p10_rate5m{{{M}}}",
                            FLEET_LEGEND + " p10"),
                           (f"model:mlwatcher_prediction_pred1:p90_rate5m{{{M}}}",
                            FLEET_LEGEND + " p90"),
                           (f"model:mlwatcher_prediction_pred1:mean_rate5m{{{M}}}",
                            FLEET_LEGEND + " mean")),
                   overrides=[by_regex(".*(p10|p90).*", BAND_STYLE)], **prob),
        heatmap("pred1 distribution of $model (all rows)",
                "Rows per pred1 bucket over time (mlwatcher_prediction_pred1_bucket). "
                "Mass moving down from the top bucket is lost confidence.",
                f'sum by (le) (increase(mlwatcher_prediction_pred1_bucket{{{M}}}'
                f'[$__rate_interval]))', w=24, repeat="model"),

        row("Fleet counters (all replicas, exact)"),
        timeseries("Precision and F1 per class over all labeled rows (all replicas)",
                   "From the counters: correct / labeled rows by predicted class, and "
                   "2 correct / (labeled by true + by predicted class); exact when only some "
                   "rows are labeled.",
                   targets((f"model_class:mlwatcher_precision:ratio_rate5m{{{MC}}}",
                            FLEET_LEGEND + " class {{class}} precision"),
                           (f"model_class:mlwatcher_f1:ratio_rate5m{{{MC}}}",
                            FLEET_LEGEND + " class {{class}} F1")), **prob),
        timeseries("spread12 quantiles over all rows (all replicas)",
                   "From the mlwatcher_prediction_spread12 histogram summed over replicas.",
                   targets((f"model:mlwatcher_prediction_spread12:p50_rate5m{{{M}}}",
                            FLEET_LEGEND + " p50"),
                           (f"model:mlwatcher_prediction_spread12:p10_rate5m{{{M}}}",
                            FLEET_LEGEND + " p10"),
                           (f"model:mlwatcher_prediction_spread12:p90_rate5m{{{M}}}",
                            FLEET_LEGEND + " p90"),
                           (f"model:mlwatcher_prediction_spread12:mean_rate5m{{{M}}}",
                            FLEET_LEGEND + " mean")),
                   overrides=[by_regex(".*(p10|p90).*", BAND_STYLE)], **prob),
        timeseries("Feature mean and std over all rows (all replicas)",
                   "From count, sums and sum of squares of each continuous feature; the "
                   "median from the optional feature histograms.",
                   targets((f"model_feature:mlwatcher_feature:mean_rate5m{{{MF}}}",
                            FLEET_LEGEND + " {{feature}} mean"),
                           (f"model_feature:mlwatcher_feature:std_rate5m{{{MF}}}",
                            FLEET_LEGEND + " {{feature}} std"),
                           (f"model_feature:mlwatcher_feature_value:p50_rate5m{{{MF}}}",
                            FLEET_LEGEND + " {{feature}} median"),
                           (f"sum without (instance) (rate(mlwatcher_feature_value_sum{{{MF}}}"
                            f"[5m])) / sum without (instance) (rate("
                            f"mlwatcher_feature_value_count{{{MF}}}[5m]))",
                            FLEET_LEGEND + " {{feature}} histogram mean"))),
        timeseries("Feature missing share over all rows (all replicas)",
                   "NaN or infinite values / all values, from the counters.",
                   targets((f"model_feature:mlwatcher_feature_missing:ratio_rate5m{{{MF}}}",
                            FLEET_LEGEND + " {{feature}}")), **prob),
        timeseries("Confusion matrix rows per second (all replicas)",
                   "Labeled rows by true and predicted class (fleet.confusion_matrix).",
                   targets(("model_true_class_predicted_class:"
                            f"mlwatcher_confusion_matrix_rows:rate5m{{{M}}}",
                            FLEET_LEGEND + " {{true_class}} as {{predicted_class}}")),
                   minimum=0),
        timeseries("Series budget",
                   "Series published per model, its limit (fleet.max_series) and the "
                   "distinct series the budget left out, by part.",
                   targets((f"mlwatcher_published_series{{{M}}}", "{{model}} published"),
                           (f"mlwatcher_series_limit{{{M}}}", "{{model}} limit"),
                           (f"mlwatcher_series_dropped_total{{{M}}}",
                            "{{model}} dropped {{family}}")),
                   overrides=[by_regex(".*limit.*", BAND_STYLE)], minimum=0),

        row("Classes"),
        timeseries("Predicted classes of $model per window",
                   "Share of the window's rows predicted as each class, stacked. A class "
                   "taking over or vanishing is what MLWatcherClassRatioShift reports.",
                   targets(('mlwatcher_predicted_class_ratio{model=~"$model",'
                            'class=~"$class"}', "class {{class}}")),
                   stack=True, repeat="model", **prob),
        timeseries("Class ratio over all rows: last 5 minutes vs last day",
                   "The two levels MLWatcherClassRatioShift compares, from the counters of "
                   "every replica: it fires when the 5m share (solid) leaves [0.5x, 2x] of "
                   "its 1-day average (dashed) by more than 5 points.",
                   targets((f"model_class:mlwatcher_predicted_class:ratio_rate5m{{{MC}}}",
                            FLEET_LEGEND + " class {{class}} 5m"),
                           (f"model_class:mlwatcher_predicted_class:ratio_rate5m_avg1d{{{MC}}}",
                            FLEET_LEGEND + " class {{class}} 1d avg")),
                   overrides=band_overrides, **prob),
        timeseries("Rows per predicted class per window",
                   "Rows predicted as each class in the last window "
                   "(mlwatcher_predicted_class_rows).",
                   targets((f"mlwatcher_predicted_class_rows{{{MC}}}",
                            "{{model}} class {{class}}")), decimals=0),
        timeseries("Predictions per second by class (all replicas)",
                   "From the mlwatcher_predictions_total counters, every row.",
                   targets((f"sum without (instance) (model_class:mlwatcher_predictions:rate5m"
                            f"{{{MC}}})", FLEET_LEGEND + " class {{class}}")),
                   unit="suffix: rows/s"),

        row("Features"),
        timeseries("Feature mean and its usual band",
                   "Mean of the selected features over the replicas' last windows, weighted "
                   "by their sampled rows (solid, what MLWatcherFeatureDrift watches), each "
                   "replica's window mean (dashed) and the band (dashed): the last hour's "
                   "average +/- half the feature's usual standard deviation and 5% of its "
                   "usual range.",
                   targets((f'model_feature_stat:mlwatcher_feature:weighted_avg'
                            f'{{{MF},stat="mean"}}',
                            FLEET_LEGEND + " {{feature}}"),
                           (f'mlwatcher_feature{{{MF},stat="mean"}}',
                            "{{model}} {{instance}} {{feature}} replica"),
                           (f'model_feature_stat:mlwatcher_feature:band_lower1h{{{MF},'
                            f'stat="mean"}}', "{{model}} {{feature}} lower"),
                           (f'model_feature_stat:mlwatcher_feature:band_upper1h{{{MF},'
                            f'stat="mean"}}', "{{model}} {{feature}} upper")),
                   overrides=band_overrides),
        timeseries("Feature IQR and its usual band",
                   "Interquartile range of the selected features (fleet, weighted by sampled "
                   "rows; each replica dashed) and its band. A collapsing IQR is often a "
                   "stuck or defaulted input.",
                   targets((f'model_feature_stat:mlwatcher_feature:weighted_avg'
                            f'{{{MF},stat="iqr"}}',
                            FLEET_LEGEND + " {{feature}}"),
                           (f'mlwatcher_feature{{{MF},stat="iqr"}}',
                            "{{model}} {{instance}} {{feature}} replica"),
                           (f'model_feature_stat:mlwatcher_feature:band_lower1h{{{MF},'
                            f'stat="iqr"}}', "{{model}} {{feature}} lower"),
                           (f'model_feature_stat:mlwatcher_feature:band_upper1h{{{MF},'
                            f'stat="iqr"}}', "{{model}} {{feature}} upper")),
                   overrides=band_overrides),
        bargauge("Features furthest from their usual level (now)",
                 "Distance of each feature's window mean/IQR from its last-hour average, in "
                 "band half-widths: above 1 the feature is out of its band. All features, "
                 "whatever the feature selector says. Infinite for a feature that used to "
                 "be constant.",
                 targets((f'topk(15, abs(model_feature_stat:mlwatcher_feature:weighted_avg'
                          f'{{{M},stat=~"mean|iqr"}} - '
                          f'model_feature_stat:mlwatcher_feature:avg1h{{{M}}}) / ignoring(stat) '
                          f'group_left() model_feature:mlwatcher_feature_band_halfwidth:avg1h'
                          f'{{{M}}} >= 0)', "{{model}} {{feature}} {{stat}}", True)),
                 thresh=thresholds(("green", None), ("orange", 0.7), ("red", 1)),
                 minimum=0, maximum=2, decimals=2),
        timeseries("Features out of their band",
                   "How many feature statistics (mean or IQR) of each model are outside "
                   "their usual band right now; MLWatcherFeatureDrift fires for each after "
                   "10 minutes.",
                   targets((f'count without (feature, stat) ((model_feature_stat:mlwatcher_'
                            f'feature:weighted_avg{{{M},stat=~"mean|iqr"}} > model_feature_stat:'
                            f'mlwatcher_feature:band_upper1h) or (model_feature_stat:mlwatcher_'
                            f'feature:weighted_avg{{{M},stat=~"mean|iqr"}} < model_feature_stat:'
                            f'mlwatcher_feature:band_lower1h)) or (0 * model:mlwatcher_window_'
                            f'sampled_rows:guarded{{{M}}})', FLEET_LEGEND)),
                   decimals=0, minimum=0,
                   thresh=thresholds(("green", None), ("red", 1)),
                   thresholds_style="dashed"),
        timeseries("Feature quartiles",
                   "q25, median and q75 of the selected features per window.",
                   targets((f'mlwatcher_feature{{{MF},stat=~"q25|median|q75"}}',
                            "{{model}} {{feature}} {{stat}}"))),
        timeseries("Feature std, min, max and range",
                   "The other per-window statistics of the selected features.",
                   targets((f'mlwatcher_feature{{{MF},stat=~"std|min|max|range"}}',
                            "{{model}} {{feature}} {{stat}}"))),
        timeseries("Missing values per feature",
                   "Share of NaN values of the selected features in the window's sample.",
                   targets((f"mlwatcher_feature_missing_ratio{{{MF}}}",
                            "{{model}} {{feature}}")),
                   thresh=thresholds(("green", None), ("red", 0.05)),
                   thresholds_style="dashed", **prob),
        timeseries("Categorical feature values",
                   "Share of each value of every categorical feature in the window's sample "
                   "(values beyond the configured maximum are folded into __other__); in the "
                   "demo, the request channel (0 web, 1 mobile, 2 partner API), whose mix "
                   "shifts during the input drift. Empty for a model without categorical "
                   "features.",
                   targets((f"mlwatcher_feature_value_ratio{{{M}}}",
                            "{{model}} {{instance}} {{feature}}={{value}}")), **prob),

        row("Labeled performance"),
        timeseries("Accuracy and macro F1 per window",
                   "On the labeled rows of each window (solid), with the 1-day averages the "
                   "MLWatcherAccuracyDropping / MLWatcherMacroF1Dropping alerts compare with "
                   "(dashed).",
                   targets((f"mlwatcher_accuracy{{{M}}}", "{{model}} accuracy"),
                           (f"mlwatcher_f1_macro{{{M}}}", "{{model}} macro F1"),
                           (f"model:mlwatcher_accuracy:ratio_rate5m_avg1d{{{M}}}",
                            FLEET_LEGEND + " accuracy (all rows) 1d avg"),
                           (f"model:mlwatcher_f1_macro:avg1d{{{M}}}",
                            FLEET_LEGEND + " macro F1 1d avg")),
                   overrides=band_overrides,
                   thresh=thresholds(("red", None), ("orange", 0.8), ("green", 0.9)),
                   thresholds_style="dashed", **prob),
        timeseries("Accuracy over all labeled rows (all replicas)",
                   "correct / labeled predictions from the counters (5m rates): every "
                   "labeled row, not only the window's sample.",
                   targets((f"model:mlwatcher_accuracy:ratio_rate5m{{{M}}}", "{{model}}")),
                   thresh=thresholds(("red", None), ("orange", 0.8), ("green", 0.9)),
                   thresholds_style="dashed", **prob),
        timeseries("F1 per class", "Per-class F1 on the window's labeled rows.",
                   targets((f"mlwatcher_f1{{{MC}}}", "{{model}} class {{class}}")), **prob),
        timeseries("Recall per class", "Of the rows whose label is the class, the share "
                   "predicted as that class (window).",
                   targets((f"mlwatcher_recall{{{MC}}}", "{{model}} class {{class}}")), **prob),
        timeseries("Precision per class", "Of the rows predicted as the class, the share "
                   "whose label is that class (window).",
                   targets((f"mlwatcher_precision{{{MC}}}", "{{model}} class {{class}}")),
                   **prob),
        timeseries("One-vs-rest accuracy per class",
                   "(TP + TN) / rows for each class in the window.",
                   targets((f"mlwatcher_class_accuracy{{{MC}}}", "{{model}} class {{class}}")),
                   **prob),
        timeseries("Recall per class over all labeled rows (all replicas)",
                   "correct / labeled per true class, from the counters (5m rates).",
                   targets((f"model_class:mlwatcher_recall:ratio_rate5m{{{MC}}}",
                            "{{model}} class {{class}}")), **prob),
        timeseries("Labeled rows per second by true class (all replicas)",
                   "Rows that came with a label, from mlwatcher_labeled_predictions_total.",
                   targets((f"sum by (model, class) (rate(mlwatcher_labeled_predictions_total"
                            f"{{{MC}}}[$__rate_interval]))", "{{model}} class {{class}}")),
                   unit="suffix: rows/s"),

        row("Late labels"),
        timeseries("Late labels per second by outcome",
                   "Labels joined later by prediction id (observe_labels): matched to their "
                   "prediction, duplicates of a label already given, unmatched (unknown or "
                   "expired id) and refused calls (5m rates).",
                   targets((f"sum by (model) (rate(mlwatcher_late_labels_matched_total{{{M}}}"
                            "[$__rate_interval]))", "{{model}} matched"),
                           (f"sum by (model) (rate(mlwatcher_late_labels_duplicate_total"
                            f"{{{M}}}[$__rate_interval]))", "{{model}} duplicate"),
                           (f"sum by (model, reason) (rate(mlwatcher_late_labels_unmatched_total"
                            f"{{{M}}}[$__rate_interval]))", "{{model}} unmatched {{reason}}"),
                           (f"sum by (model, reason) (rate(mlwatcher_late_labels_rejected_total"
                            f"{{{M}}}[$__rate_interval]))", "{{model}} rejected {{reason}}")),
                   unit="suffix: labels/s", minimum=0),
        timeseries("Label delay (joined labels)",
                   "Seconds from a prediction to its late label: median and 90th percentile "
                   "from the histogram, and the mean (5m rates; empty without late labels).",
                   targets(("histogram_quantile(0.5, sum by (model, le) (rate("
                            f"mlwatcher_late_label_delay_seconds_bucket{{{M}}}"
                            "[$__rate_interval])))", "{{model}} median"),
                           ("histogram_quantile(0.9, sum by (model, le) (rate("
                            f"mlwatcher_late_label_delay_seconds_bucket{{{M}}}"
                            "[$__rate_interval])))", "{{model}} p90"),
                           (f"sum by (model) (rate(mlwatcher_late_label_delay_seconds_sum{{{M}}}"
                            "[$__rate_interval])) / sum by (model) (rate("
                            f"mlwatcher_late_label_delay_seconds_count{{{M}}}"
                            "[$__rate_interval]))", "{{model}} mean")),
                   unit="s", minimum=0),
        timeseries("Prediction ids awaiting labels",
                   "Ids held for late labels (bounded by max_ids and id_ttl_seconds), and "
                   "ids forgotten before their label came, per second by reason.",
                   targets((f"mlwatcher_prediction_ids{{{M}}}", "{{model}} held"),
                           (f"sum by (model, reason) (rate(mlwatcher_prediction_ids_expired_total"
                            f"{{{M}}}[$__rate_interval]))", "{{model}} forgotten/s {{reason}}")),
                   minimum=0),

        row("Sample sizes"),
        timeseries("Rows per window and the alert guard",
                   "Rows seen, rows sampled and labeled rows per window. Below the red "
                   "dashed line (mlwatcher:guard_min_sampled_rows, set in "
                   "config/rules/mlwatcher-recording.yml) no statistical alert fires.",
                   targets((f"mlwatcher_window_rows{{{M}}}", "{{model}} rows"),
                           (f"mlwatcher_window_sampled_rows{{{M}}}", "{{model}} sampled"),
                           (f"mlwatcher_labeled_rows{{{M}}}", "{{model}} labeled"),
                           (GUARD, "alert guard (min sampled rows)")),
                   overrides=[by_name("alert guard (min sampled rows)", GUARD_STYLE)],
                   decimals=0, minimum=0),
        timeseries("Rows per second (all replicas)",
                   "Predicted rows per second from the counters (5m rate).",
                   targets((f"model:mlwatcher_predictions:sum_rate5m{{{M}}}", FLEET_LEGEND)),
                   unit="suffix: rows/s", minimum=0),

        row("Rejected rows"),
        timeseries("Rejected rows per second by reason",
                   "Rows the monitor refused (the model's predict is never affected). "
                   "Every reason is exported at 0, so flat zero lines are the healthy state.",
                   targets((f"sum without (instance) (model_reason:mlwatcher_rejected_rows:"
                            f"rate5m{{{M}}})", FLEET_LEGEND + " {{reason}}")),
                   unit="suffix: rows/s", minimum=0),
        timeseries("Share of rows rejected",
                   "rejected / (rejected + accepted), 5m rates. MLWatcherRejectedRowsRising "
                   "fires above 1% (dashed).",
                   targets((f"model:mlwatcher_rejected_rows:ratio_rate5m{{{M}}}", "{{model}}")),
                   unit="percentunit", minimum=0,
                   thresh=thresholds(("green", None), ("red", 0.01)),
                   thresholds_style="dashed"),
        timeseries("Dropped feature and label rows per second",
                   "Rows whose features or labels were left out while their predictions "
                   "were still counted and sampled, by part and reason (5m rates).",
                   targets((f"sum by (model, part, reason) (rate(mlwatcher_dropped_rows_total"
                            f"{{{M}}}[$__rate_interval]))", "{{model}} {{part}} {{reason}}")),
                   unit="suffix: rows/s", minimum=0),
        timeseries("History records not written per second",
                   "Window records the history file (docs/history.md) could not write, by "
                   "reason; the windows stay in memory and the metrics are unaffected. "
                   "Flat zero lines are the healthy state.",
                   targets((f"sum by (model, reason) (rate(mlwatcher_history_write_failures_"
                            f"total{{{M}}}[$__rate_interval]))", "{{model}} {{reason}}")),
                   unit="suffix: records/s", minimum=0),

        # Drift against the reference profile and label-free estimates (docs/drift.md).
        row("Drift against the reference and estimated performance"),
        bargauge("Top drifted features (PSI)",
                 "The 10 features whose last window is furthest from the reference profile "
                 "by PSI (0.1 moderate, 0.2 large: the default threshold). "
                 "mlwatcher_drifted_features counts features beyond any method's threshold.",
                 targets((f'topk(10, mlwatcher_feature_drift{{{M},method="psi"}})',
                          "{{model}} {{feature}}", True)),
                 thresh=thresholds(("green", None), ("orange", 0.1), ("red", 0.2)),
                 minimum=0),
        timeseries("Drifted features and prediction drift over time",
                   "Features beyond a drift threshold, and the PSI of the predicted class "
                   "distribution, pred1 and spread12 against the reference. "
                   "MLWatcherReferenceDrift fires on the prediction drift.",
                   targets((f"mlwatcher_drifted_features{{{M}}}", "{{model}} drifted features"),
                           (f'mlwatcher_prediction_drift{{{M},method="psi"}}',
                            "{{model}} {{quantity}} psi")), minimum=0),
        timeseries("Feature drift over time",
                   "Every method for the selected features: psi, js, ks, wasserstein "
                   "(continuous), psi, js, chi2_pvalue (categorical).",
                   targets((f"mlwatcher_feature_drift{{{MF}}}",
                            "{{model}} {{feature}} {{method}}")), minimum=0),
        timeseries("Estimated vs realised accuracy",
                   "Accuracy estimated without labels (CBPE, valid under covariate shift, "
                   "not under concept drift) with its +/- 2 standard error band (dashed), "
                   "beside the accuracy on the window's labeled rows, when labels come.",
                   targets((f"mlwatcher_estimated_accuracy{{{M}}}", "{{model}} estimated"),
                           (f"mlwatcher_estimated_accuracy{{{M}}} - 2 * "
                            f"mlwatcher_estimated_accuracy_stderr{{{M}}}", "{{model}} band low"),
                           (f"mlwatcher_estimated_accuracy{{{M}}} + 2 * "
                            f"mlwatcher_estimated_accuracy_stderr{{{M}}}",
                            "{{model}} band high"),
                           (f"mlwatcher_accuracy{{{M}}}", "{{model}} realised")),
                   overrides=[by_regex(".*band.*", BAND_STYLE)],
                   unit="percentunit", minimum=0, maximum=1),
        timeseries("Estimated F1 per class and macro F1",
                   "One-vs-rest F1 estimated without labels (CBPE) per class, and their mean.",
                   targets((f"mlwatcher_estimated_f1{{{MC}}}", "{{model}} {{class}}"),
                           (f"mlwatcher_estimated_f1_macro{{{M}}}", "{{model}} macro")),
                   unit="percentunit", minimum=0, maximum=1),
        table("Reference profiles",
              "The reference profile each model is judged against (mlwatcher_reference_info).",
              [target(f"mlwatcher_reference_info{{{M}}}", instant=True, fmt="table")],
              ["Time", "Value", "__name__"], {}),

        row("Exporter health"),
        timeseries("Window age and stall limit",
                   "Seconds since the last window ended (solid) against 3 window lengths "
                   "(dashed), the limit of MLWatcherWindowStalled.",
                   targets((f"model:mlwatcher_window_end:age_seconds{{{M}}}", "{{model}} age"),
                           (f"3 * mlwatcher_window_duration_seconds{{{M}}}",
                            "{{model}} stall limit")),
                   overrides=[by_regex(".*stall limit.*", BAND_STYLE)], unit="s", minimum=0),
        timeseries("Window length and compute time",
                   "Length of the last window and the time spent computing its statistics; "
                   "compute time close to the window length will stall the exporter.",
                   targets((f"mlwatcher_window_duration_seconds{{{M}}}", "{{model}} window"),
                           (f"mlwatcher_window_compute_duration_seconds{{{M}}}",
                            "{{model}} compute")), unit="s", minimum=0),
        timeseries("Seconds since the last prediction",
                   "Time since the monitor last saw a batch (no traffic or a stuck caller).",
                   targets((f"time() - mlwatcher_last_prediction_timestamp_seconds{{{M}}}",
                            "{{model}}")), unit="s", minimum=0),
        timeseries("Scrapes of the exporters",
                   "up (1 = scraped) and scrape duration of the mlwatcher* jobs; "
                   "MLWatcherExporterDown fires after 5 minutes at 0.",
                   targets(('up{job=~"mlwatcher.*"}', "up {{job}} {{instance}}"),
                           ('scrape_duration_seconds{job=~"mlwatcher.*"}',
                            "scrape seconds {{job}} {{instance}}")), minimum=0),
    ]
    variables = [
        query_variable("model", "Model", "label_values(mlwatcher_model_info, model)",
                       description="Models from mlwatcher_model_info."),
        query_variable("class", "Class",
                       'label_values(mlwatcher_predicted_class_ratio{model=~"$model"}, class)'),
        query_variable("feature", "Feature",
                       'label_values(mlwatcher_feature{model=~"$model"}, feature)',
                       include_all=False,
                       description="Continuous features drawn by the feature panels (several "
                                   "allowed). 'Features furthest from their usual level' "
                                   "lists them all; 'Categorical feature values' draws every "
                                   "categorical feature."),
    ]
    return dashboard(
        "mlwatcher-overview", "MLWatcher / Model overview",
        "Window statistics of the monitored classifiers: confidence (pred1, spread12), "
        "predicted classes, features, labeled performance, sample sizes, rejected rows "
        "and exporter health. Rules: config/rules/.",
        variables, panels)


# ---------------------------------------------------------------------------------------
# MLWatcher / Models side by side (canary)
# ---------------------------------------------------------------------------------------

def canary() -> Dict[str, Any]:
    prob = dict(unit="percentunit", minimum=0, maximum=1)
    both = 'model=~"$production|$challenger"'
    both_c = 'model=~"$production|$challenger",class=~"$class"'
    gap = dict(unit="percentunit", thresh=thresholds(("red", None), ("green", 0)),
               thresholds_style="line")
    per_column = [
        by_name(name, [{"id": "unit", "value": "percentunit"}, {"id": "decimals", "value": 1}])
        for name in ("accuracy", "macro F1", "median pred1", "median spread12",
                     "accuracy (all rows)")
    ] + [by_name("sampled rows", [{"id": "decimals", "value": 0}])]
    panels: List[Dict[str, Any]] = [
        row("Now"),
        table("Production and challengers, last window",
              "The same inputs feed every model: differences come from the models. Window "
              "statistics are averaged over replicas, sampled rows summed; 'accuracy (all "
              "rows)' uses the counters over 5 minutes and all replicas.",
              targets((f"avg by (model) (mlwatcher_accuracy{{{both}}})", "", True, "table"),
                      (f"avg by (model) (mlwatcher_f1_macro{{{both}}})", "", True, "table"),
                      (f'avg by (model) (mlwatcher_pred1{{{both},stat="median"}})', "", True,
                       "table"),
                      (f'avg by (model) (mlwatcher_spread12{{{both},stat="median"}})', "", True,
                       "table"),
                      (f"sum by (model) (mlwatcher_window_sampled_rows{{{both}}})", "", True,
                       "table"),
                      (f"model:mlwatcher_accuracy:ratio_rate5m{{{both}}}", "", True, "table")),
              exclude=["Time"],
              rename={"Value #A": "accuracy", "Value #B": "macro F1",
                      "Value #C": "median pred1", "Value #D": "median spread12",
                      "Value #E": "sampled rows", "Value #F": "accuracy (all rows)"},
              overrides=per_column, h=6),

        row("Labeled performance"),
        timeseries("Accuracy per window", "Window accuracy of each model on the same rows.",
                   targets((f"mlwatcher_accuracy{{{both}}}", "{{model}}")), **prob),
        timeseries("Accuracy gap: challenger - production (all rows)",
                   "Above 0 the challenger is more accurate than production "
                   "(counters, 5m rates, all replicas).",
                   targets(('sum by (model) (model:mlwatcher_accuracy:ratio_rate5m'
                            '{model=~"$challenger"}) - on() group_left() sum('
                            'model:mlwatcher_accuracy:ratio_rate5m{model="$production"})',
                            "{{model}} - $production")), **gap),
        timeseries("Macro F1 per window", "Unweighted mean of the per-class F1 scores.",
                   targets((f"mlwatcher_f1_macro{{{both}}}", "{{model}}")), **prob),
        timeseries("Macro F1 gap: challenger - production",
                   "Above 0 the challenger treats the classes more evenly well.",
                   targets(('avg by (model) (mlwatcher_f1_macro{model=~"$challenger"}) - on() '
                            'group_left() avg(mlwatcher_f1_macro{model="$production"})',
                            "{{model}} - $production")), **gap),
        timeseries("Recall per class (all rows)",
                   "Per true class, the share predicted right, from the counters.",
                   targets((f"model_class:mlwatcher_recall:ratio_rate5m{{{both_c}}}",
                            "{{model}} class {{class}}")), **prob),
        bargauge("F1 per class, last window", "Per-class F1 of each model, side by side.",
                 targets((f"mlwatcher_f1{{{both_c}}}", "class {{class}} {{model}}", True)),
                 thresh=thresholds(("red", None), ("orange", 0.8), ("green", 0.9)),
                 minimum=0, maximum=1, decimals=2, unit="percentunit"),

        row("Confidence and classes"),
        timeseries("Median pred1 per window", "How sure each model is of its typical "
                   "prediction on the same inputs.",
                   targets((f'mlwatcher_pred1{{{both},stat="median"}}', "{{model}}")), **prob),
        timeseries("Median spread12 per window", "Gap between each model's two best "
                   "classes.",
                   targets((f'mlwatcher_spread12{{{both},stat="median"}}', "{{model}}")),
                   **prob),
        timeseries("Predicted class ratio per window",
                   "Share of rows predicted as each class, per model.",
                   targets((f"mlwatcher_predicted_class_ratio{{{both_c}}}",
                            "{{model}} class {{class}}")), **prob),
        timeseries("Class ratio gap: challenger - production",
                   "Per class, how much more often the challenger predicts it than "
                   "production on the same rows.",
                   targets(('avg by (model, class) (mlwatcher_predicted_class_ratio'
                            '{model=~"$challenger",class=~"$class"}) - on(class) group_left() '
                            'avg by (class) (mlwatcher_predicted_class_ratio'
                            '{model="$production",class=~"$class"})',
                            "{{model}} class {{class}}")),
                   unit="percentunit", thresh=thresholds(("green", None)),
                   thresholds_style="off"),

        row("Sample sizes"),
        timeseries("Sampled rows per window and the alert guard",
                   "Comparisons of small windows are noise: below the red dashed line no "
                   "statistical alert fires.",
                   targets((f"mlwatcher_window_sampled_rows{{{both}}}", "{{model}}"),
                           (f"mlwatcher_labeled_rows{{{both}}}", "{{model}} labeled"),
                           (GUARD, "alert guard (min sampled rows)")),
                   overrides=[by_name("alert guard (min sampled rows)", GUARD_STYLE)],
                   decimals=0, minimum=0),
        timeseries("Rows per second (all replicas)", "Traffic seen by each model's monitor.",
                   targets((f"model:mlwatcher_predictions:sum_rate5m{{{both}}}", "{{model}}")),
                   unit="suffix: rows/s", minimum=0),
    ]
    variables = [
        query_variable("production", "Production model",
                       "label_values(mlwatcher_model_info, model)", multi=False,
                       include_all=False, description="The model serving the answers."),
        query_variable("challenger", "Challengers",
                       'label_values(mlwatcher_model_info{model!="$production"}, model)',
                       description="Models fed the same inputs, for comparison."),
        query_variable("class", "Class",
                       'label_values(mlwatcher_predicted_class_ratio{model=~"$production"},'
                       ' class)'),
    ]
    return dashboard(
        "mlwatcher-canary", "MLWatcher / Models side by side",
        "A production model and its challengers fed the same inputs (canary): accuracy, "
        "F1, confidence and predicted classes, with the gaps between them.",
        variables, panels)


DASHBOARDS = {
    "mlwatcher-overview.json": overview,
    "mlwatcher-canary.json": canary,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if a JSON file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("out of date, run python dashboards/generate.py: " + ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
