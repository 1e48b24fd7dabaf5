"""profiledata.py and ``mlwatcher-exporter profile``: CSV, NPZ and Parquet (with pyarrow)
reference data to a profile file that a monitor loads."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from mlwatcher_exporter.cli import main
from mlwatcher_exporter.config import load_config
from mlwatcher_exporter.profiledata import read_reference_data
from mlwatcher_exporter.reference import CategoricalProfile, load_reference

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CSV = FIXTURES / "reference.csv"
CONFIG = FIXTURES / "reference-model.yml"


def _rows():
    with open(CSV, newline="") as f:
        return list(csv.DictReader(f))


def test_profile_command_reads_csv_and_the_profile_loads(tmp_path, capsys) -> None:
    out = tmp_path / "pets.json"
    assert main(["profile", "--config", str(CONFIG), str(CSV), "-o", str(out)]) == 0
    assert "profile of 300 rows, 2 features, calibrated (isotonic) on 300 labels" in \
        capsys.readouterr().out
    profile = load_reference(out)
    rows = _rows()
    assert profile.classes == ["cat", "dog"] and profile.model == "pets"
    colour = profile.features["colour"]
    assert isinstance(colour, CategoricalProfile)
    counts = {name: sum(r["colour"] == name for r in rows) / 300 for name in colour.names}
    assert dict(zip(colour.names, colour.shares.tolist())) == pytest.approx(counts)
    amounts = np.array([float(r["amount"]) for r in rows])
    assert profile.features["amount"].points == pytest.approx(np.sort(amounts))
    dog = np.array([float(r["proba_dog"]) for r in rows]) > 0.5
    assert profile.class_shares == pytest.approx([1 - dog.mean(), dog.mean()])
    truth = np.array([r["label"] == "dog" for r in rows])
    assert profile.accuracy == pytest.approx(np.mean(dog == truth))


def test_profile_command_reads_npz(tmp_path) -> None:
    rows = _rows()
    proba = np.array([[float(r["proba_cat"]), float(r["proba_dog"])] for r in rows])
    features = np.array([[float(r["amount"])] for r in rows])
    labels = np.array([r["label"] for r in rows])
    data = tmp_path / "ref.npz"
    np.savez(data, proba=proba, features=features, labels=labels)
    config = tmp_path / "m.yml"
    config.write_text("model: pets\nclass_names: [cat, dog]\nfeature_names: [amount]\n")
    out = tmp_path / "p.json"
    assert main(["profile", "--config", str(config), str(data), "-o", str(out),
                 "--calibration", "sigmoid"]) == 0
    profile = load_reference(out)
    assert profile.calibration.method == "sigmoid"
    assert list(profile.features) == ["amount"]


def test_parquet_needs_pyarrow_or_reads_it(tmp_path, capsys) -> None:
    path = tmp_path / "ref.parquet"
    settings = load_config(CONFIG)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        path.write_bytes(b"PAR1")
        assert main(["profile", "--config", str(CONFIG), str(path), "-o",
                     str(tmp_path / "p.json")]) == 2
        assert "reading Parquet needs pyarrow" in capsys.readouterr().err
        return
    rows = _rows()
    table = pa.table({key: [r[key] if key in ("colour", "label") else float(r[key])
                            for r in rows] for key in rows[0]})
    pq.write_table(table, path)
    proba, features, labels, _ = read_reference_data(str(path), settings)
    assert proba.shape == (300, 2) and set(features) == {"amount", "colour"}


@pytest.mark.parametrize("text,message", [
    ("amount,colour,label\n1,red,cat\n", "no column 'proba_cat'"),
    ("amount,colour,proba_cat,proba_dog\n1,red,0.5\n", "line 2 has 3 cells"),
    ("", "empty CSV"),
])
def test_bad_data_ends_with_one_error_line(tmp_path, capsys, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert main(["profile", "--config", str(CONFIG), str(path), "-o",
                 str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unknown_suffix_is_refused(tmp_path, capsys) -> None:
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    assert main(["profile", "--config", str(CONFIG), str(path), "-o", "p.json"]) == 2
    assert "expected .csv, .npz or .parquet" in capsys.readouterr().err
