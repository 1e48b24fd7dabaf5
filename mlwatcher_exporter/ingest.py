"""Bodies of ``POST /api/v1/models/{model}/observations``, decoded into a batch.

Three formats, told by ``Content-Type``:

``application/json``
    ``{"proba": [[...], ...], "features": [[...], ...] | {"name": [...], ...},
    "labels": [...], "ids": [...]}``; only ``proba`` is required. ``null`` is a missing
    feature value or "no label"; ``NaN`` and ``Infinity`` are not JSON and are refused.
``application/x-npy``
    One NumPy ``.npy`` array: the probabilities.
``application/x-npz`` (or ``application/zip``)
    A NumPy ``.npz`` archive (``numpy.savez`` or ``savez_compressed``) with arrays named
    ``proba`` (required), ``features``, ``labels`` and ``ids``.

Arrays are read without pickle, object dtypes are refused, and the sizes their headers
declare are checked against ``max_array_bytes`` before anything is allocated, so a
compressed archive cannot expand into more memory than that. Every refusal is an
:class:`IngestError` naming the field and the problem.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np

__all__ = ["Batch", "IngestError", "decode_body", "FIELDS", "CONTENT_TYPES"]

#: The fields of a batch.
FIELDS = ("proba", "features", "labels", "ids")
#: Accepted media types, by format name.
CONTENT_TYPES = {"json": ("application/json",), "npy": ("application/x-npy",),
                 "npz": ("application/x-npz", "application/zip")}
_ARRAY_KINDS = "biufUS"  # booleans, integers, floats, text; never objects
_MAX_NPZ_MEMBERS = 8


class IngestError(Exception):
    """A body that cannot be ingested: HTTP `status`, the `field` at fault, the problem."""

    def __init__(self, status: int, field: str, problem: str, reason: str = "invalid") -> None:
        super().__init__(f"{field}: {problem}")
        self.status = status
        self.field = field
        self.problem = problem
        self.reason = reason

    def document(self) -> Dict[str, Any]:
        """The JSON error answered."""
        return {"error": {"field": self.field, "problem": self.problem,
                          "reason": self.reason}}


@dataclass
class Batch:
    """A decoded batch, in the types :meth:`ModelMonitor.observe` takes."""

    proba: Any
    features: Any = None
    labels: Any = None
    ids: Any = None
    format: str = "json"

    @property
    def rows(self) -> int:
        """Rows of the probabilities (0 when they are not a table)."""
        shape = getattr(self.proba, "shape", None)
        return int(shape[0]) if shape else 0


def media_format(content_type: Optional[str]) -> str:
    """The format of a ``Content-Type`` header value.

    Raises
    ------
    IngestError
        415 for a missing or unknown media type.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    for name, types in CONTENT_TYPES.items():
        if media in types:
            return name
    accepted = ", ".join(t for types in CONTENT_TYPES.values() for t in types)
    raise IngestError(415, "Content-Type", f"{media or 'missing'!r} is not accepted, must "
                      f"be one of {accepted}", "media_type")


def decode_body(body: bytes, content_type: Optional[str], max_array_bytes: int) -> Batch:
    """Decode a request body into a :class:`Batch`.

    Raises
    ------
    IngestError
        400 for a body that is not valid JSON or NumPy data, 415 for another media
        type, 422 for fields of the wrong type or shape.
    """
    kind = media_format(content_type)
    if kind == "json":
        return _from_json(body)
    if kind == "npy":
        return Batch(_npy(io.BytesIO(body), len(body), "proba", max_array_bytes), format="npy")
    return _from_npz(body, max_array_bytes)


# ---------------------------------------------------------------------------- JSON

def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON, write null for a missing value")


def _from_json(body: bytes) -> Batch:
    try:
        data = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise IngestError(400, "body", "JSON nested too deeply", "json") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise IngestError(400, "body", f"not valid JSON ({error})", "json") from None
    if not isinstance(data, dict):
        raise IngestError(422, "body", f"must be a JSON object with {list(FIELDS)}, got "
                          f"{type(data).__name__}", "type")
    for key in data:
        if key not in FIELDS:
            raise IngestError(422, key, f"unknown field, expected one of {list(FIELDS)}",
                              "unknown_field")
    if "proba" not in data or data["proba"] is None:
        raise IngestError(422, "proba", "missing, every batch needs its probabilities",
                          "missing")
    batch = Batch(_json_table(data["proba"], "proba"))
    features = data.get("features")
    if isinstance(features, dict):
        batch.features = _json_columns(features)
    elif features is not None:
        batch.features = _json_table(features, "features")
    labels = data.get("labels")
    if labels is not None:
        if not isinstance(labels, list):
            raise IngestError(422, "labels", f"must be a list (one label per row), got "
                              f"{type(labels).__name__}", "type")
        if labels and all(type(v) is int for v in labels):
            # as an array: observe() converts a list of ints element by element
            batch.labels = np.array(labels, dtype=np.int64) if all(
                -(1 << 62) < v < (1 << 62) for v in labels) else labels
        else:
            batch.labels = labels
    ids = data.get("ids")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, (str, int)) and
                                                not isinstance(i, bool) for i in ids):
            raise IngestError(422, "ids", "must be a list of strings or integers", "type")
        batch.ids = ids
    return batch


def _json_table(value: Any, field: str) -> np.ndarray:
    """A JSON list of rows of numbers (null: NaN) as a float64 array."""
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        raise IngestError(422, field, f"must be a list of rows (lists of numbers), got "
                          f"{_kind(value)}", "type")
    for row in value:
        for item in row:
            if not (item is None or (isinstance(item, (int, float))
                                     and not isinstance(item, bool))):
                raise IngestError(422, field, f"must hold numbers or null, found "
                                  f"{_kind(item)}", "type")
    if not value:
        return np.empty((0, 0))
    try:
        array = np.array(value, dtype=np.float64)
    except (ValueError, OverflowError) as error:
        raise IngestError(422, field, f"must be rows of equal length ({error})",
                          "shape") from None
    if array.ndim != 2:
        raise IngestError(422, field, f"must be a 2-D table, got shape {array.shape}", "shape")
    return array


def _json_columns(columns: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """A JSON object of columns as arrays: numbers (null: NaN) or text."""
    out: Dict[str, np.ndarray] = {}
    for name, values in columns.items():
        label = f"features.{name}"
        if not isinstance(values, list):
            raise IngestError(422, label, f"must be a list of values, got {_kind(values)}",
                              "type")
        if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
               for v in values):
            out[name] = np.array([math.nan if v is None else v for v in values],
                                 dtype=np.float64)
        elif all(v is None or isinstance(v, (str, bool)) for v in values):
            out[name] = np.array(values, dtype=object)
        else:
            raise IngestError(422, label, "must hold numbers (null: missing) or text, not a "
                              "mix or nested values", "type")
    return out


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return {dict: "an object", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


# ---------------------------------------------------------------------------- NumPy

def _npy(stream: Any, size: int, field: str, max_array_bytes: int) -> np.ndarray:
    """One .npy array from `stream` of `size` bytes, its header checked first."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (ValueError, OSError, EOFError) as error:
        raise IngestError(400, field, f"not a NumPy .npy array ({error})", "npy") from None
    if dtype.hasobject or dtype.names is not None or dtype.kind not in _ARRAY_KINDS:
        raise IngestError(422, field, f"dtype {dtype} is not accepted, must be numbers, "
                          "booleans or text", "type")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > max_array_bytes:
        raise IngestError(413, field, f"array of {nbytes} bytes, the limit is "
                          f"{max_array_bytes}", "too_large")
    header_end = stream.tell()
    if size - header_end < nbytes:
        raise IngestError(400, field, f"array data truncated: {size - header_end} bytes, "
                          f"its header declares {nbytes}", "npy")
    data = stream.read(nbytes)
    array = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)) if shape else 1)
    if fortran:
        return array.reshape(shape[::-1]).transpose().copy()
    return array.reshape(shape).copy()


def _from_npz(body: bytes, max_array_bytes: int) -> Batch:
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as error:
        raise IngestError(400, "body", f"not a NumPy .npz archive ({error})", "npz") from None
    if len(members) > _MAX_NPZ_MEMBERS:
        raise IngestError(422, "body", f"archive has {len(members)} members, must have at "
                          f"most {len(FIELDS)}: {list(FIELDS)}", "unknown_field")
    total = sum(member.file_size for member in members)
    if total > max_array_bytes:
        raise IngestError(413, "body", f"archive expands to {total} bytes, the limit is "
                          f"{max_array_bytes}", "too_large")
    arrays: Dict[str, np.ndarray] = {}
    for member in members:
        name = member.filename[:-4] if member.filename.endswith(".npy") else member.filename
        if name not in FIELDS:
            raise IngestError(422, name, f"unknown array, expected some of {list(FIELDS)}",
                              "unknown_field")
        if name in arrays:
            raise IngestError(422, name, "given twice", "unknown_field")
        try:
            with archive.open(member) as stream:
                data = stream.read(member.file_size + 1)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
            raise IngestError(400, name, f"unreadable archive member ({error})",
                              "npz") from None
        if len(data) > member.file_size:
            raise IngestError(400, name, "member longer than the archive says", "npz")
        arrays[name] = _npy(io.BytesIO(data), len(data), name, max_array_bytes)
    if "proba" not in arrays:
        raise IngestError(422, "proba", "missing, the archive needs an array named proba",
                          "missing")
    ids = arrays.get("ids")
    return Batch(arrays["proba"], arrays.get("features"), arrays.get("labels"),
                 None if ids is None else ids.tolist(), format="npz")
