"""A monitor's reference (monitordrift.ReferenceMixin): fit it, set it, read it."""

import numpy as np

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.reference import fit_reference


def _data(rng, rows, shift=0.0):
    features = rng.normal(shift, 1.0, size=(rows, 2))
    proba = rng.dirichlet([4.0, 2.0, 1.0], size=rows)
    return features, proba


def test_fit_reference_takes_the_classes_from_the_probabilities_when_unknown(registry, clock):
    rng = np.random.default_rng(3)
    monitor = ModelMonitor(model="drift", registry=registry, background=False, _clock=clock)
    assert monitor.reference is None
    features, proba = _data(rng, 2000)
    profile = monitor.fit_reference(features, proba)
    assert monitor.reference is profile and profile.classes == ["0", "1", "2"]
    monitor.observe(*reversed(_data(rng, 1000, shift=3.0)))
    judgement = monitor.close_window().judgement
    assert judgement.drifted_features == 2


def test_set_reference_reads_a_saved_profile(registry, clock, tmp_path):
    rng = np.random.default_rng(4)
    features, proba = _data(rng, 2000)
    path = tmp_path / "reference.json"
    fit_reference(proba, features, classes=[0, 1, 2]).save(path)
    monitor = ModelMonitor(model="drift", n_classes=3, registry=registry, background=False,
                           _clock=clock)
    monitor.set_reference(str(path))
    assert monitor.reference is not None
    monitor.observe(proba[:500], features[:500])
    judgement = monitor.close_window().judgement
    assert judgement is not None and judgement.drifted_features == 0
