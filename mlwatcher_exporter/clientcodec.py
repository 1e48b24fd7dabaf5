"""How the client turns buffered batches into request bodies: NPZ when it can, JSON else.

Batches of plain numeric arrays (the common case) are concatenated and sent as one
uncompressed ``.npz`` body, which the server reads without parsing text; anything else
(DataFrames, lists with missing labels, text features) is sent as JSON, one batch per
request, with NaN written as ``null``.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any, List, NamedTuple, Optional, Tuple

import numpy as np

from .tables import is_dataframe

__all__ = ["Item", "copy_batch", "coalescable", "encode"]

_NPZ_KINDS = "biuf"
_LABEL_KINDS = "biufU"


class Item(NamedTuple):
    """One batch as the model's thread copied it."""

    proba: np.ndarray
    features: Any
    labels: Any
    rows: int
    ids: Optional[np.ndarray] = None  # 1-D, integers or text, one per row


def _plain(value: Any) -> Any:
    """A copy of `value` that the caller may change afterwards without effect."""
    if value is None:
        return None
    if is_dataframe(value):
        return value.copy()
    if isinstance(value, np.ndarray):
        return value.copy()
    return np.array(value)


def _ids(ids: Any, rows: int) -> Optional[np.ndarray]:
    """A copy of the prediction ids: one integer or string per row."""
    if ids is None:
        return None
    items = list(ids.tolist() if isinstance(ids, np.ndarray) else ids)
    if not all(isinstance(i, (str, int, np.integer)) and not isinstance(i, (bool, np.bool_))
               for i in items):
        raise TypeError("ids must be strings or integers, one per row")
    if len(items) != rows:
        raise ValueError(f"ids has {len(items)} values, must have one per row ({rows})")
    kinds = {isinstance(i, str) for i in items}
    if len(kinds) > 1:
        raise TypeError("ids must be all strings or all integers")
    array = np.array(items, dtype=str if kinds == {True} else np.int64) if items else \
        np.zeros(0, np.int64)
    return array


def copy_batch(proba: Any, features: Any, labels: Any, ids: Any = None) -> Item:
    """The batch copied (what the model's thread does, and nothing more).

    Raises
    ------
    ValueError, TypeError
        When `proba` is not a 2-D table, or `ids` are not one string or integer per row.
    """
    array = np.array(proba.to_numpy() if is_dataframe(proba) else proba)
    if array.ndim != 2:
        raise ValueError(f"proba has shape {array.shape}, must be 2-D (n_rows, n_classes)")
    rows = int(array.shape[0])
    return Item(array, _plain(features), _plain(labels), rows, _ids(ids, rows))


def _signature(item: Item) -> Optional[Tuple[Any, ...]]:
    """What batches must share to be concatenated; None for one sent alone."""
    proba, features, labels = item.proba, item.features, item.labels
    if proba.dtype.kind not in _NPZ_KINDS:
        return None
    parts: List[Any] = [proba.shape[1:]]
    for value, kinds in ((features, _NPZ_KINDS), (labels, _LABEL_KINDS)):
        if value is None:
            parts.append(None)
        elif isinstance(value, np.ndarray) and value.dtype.kind in kinds and value.ndim >= 1 \
                and value.shape[0] == item.rows:
            parts.append((value.shape[1:], value.dtype.kind))
        else:
            return None
    parts.append(None if item.ids is None else item.ids.dtype.kind)
    return tuple(parts)


def coalescable(first: Item, other: Item) -> bool:
    """Whether `other` can travel in the same NPZ body as `first`."""
    signature = _signature(first)
    return signature is not None and signature == _signature(other)


def _listed(value: Any) -> Any:
    """JSON-ready Python values: NaN and NaT as None."""
    if is_dataframe(value):
        return {str(name): _listed(value[name].to_numpy(dtype=object))
                for name in value.columns}
    items = value.tolist() if isinstance(value, np.ndarray) else list(value)
    return [_scalar(v) for v in items]


def _scalar(value: Any) -> Any:
    if isinstance(value, list):
        return [_scalar(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _scalar(value.item())
    if value is not None and not isinstance(value, (str, int, float, bool)):
        try:
            if value != value:  # pandas.NA, NaT
                return None
        except TypeError:
            return None
        return str(value)
    return value


def encode(items: List[Item]) -> Tuple[bytes, str]:
    """The body and Content-Type for `items` (several only when coalescable)."""
    first = items[0]
    if _signature(first) is not None:
        arrays = {"proba": np.concatenate([i.proba for i in items])}
        if first.features is not None:
            arrays["features"] = np.concatenate([i.features for i in items])
        if first.labels is not None:
            arrays["labels"] = np.concatenate([i.labels for i in items])
        if first.ids is not None:
            arrays["ids"] = np.concatenate([i.ids for i in items])
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue(), "application/x-npz"
    assert len(items) == 1
    document = {"proba": _listed(first.proba)}
    if first.features is not None:
        document["features"] = _listed(first.features)
    if first.labels is not None:
        document["labels"] = _listed(first.labels)
    if first.ids is not None:
        document["ids"] = first.ids.tolist()
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode(), \
        "application/json"
