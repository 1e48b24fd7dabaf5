"""The catalogue of metric families (families.py)."""

import pytest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)

from mlwatcher_exporter.families import FAMILIES, WINDOW_FAMILIES, new_family

_KINDS = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily,
          "histogram": HistogramMetricFamily, "info": InfoMetricFamily}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_is_made_of_its_type_with_model_first(name):
    kind, documentation, extra = FAMILIES[name]
    family = new_family(name)
    assert isinstance(family, _KINDS[kind]) and family.documentation == documentation
    assert family.name == name  # counters and infos named without _total and _info
    # Adding a sample takes the model label and then the family's own, in that order.
    labels = ["m", *("x" * (i + 1) for i in range(len(extra)))]
    if kind == "histogram":
        family.add_metric(labels, buckets=[("+Inf", 1.0)], sum_value=0.0)
    elif kind == "info":
        family.add_metric(labels, {"key": "value"})
    else:
        family.add_metric(labels, 1.0)
    assert family.samples[0].labels["model"] == "m"
    for i, label in enumerate(extra):
        assert family.samples[0].labels[label] == "x" * (i + 1)


def test_the_window_families_are_in_the_catalogue():
    assert set(WINDOW_FAMILIES) <= set(FAMILIES)
    assert len(set(WINDOW_FAMILIES)) == len(WINDOW_FAMILIES)
