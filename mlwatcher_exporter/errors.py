"""The errors of a batch that cannot be monitored, and how a value is named in them."""

from __future__ import annotations

from typing import Any

__all__ = ["BatchError", "BatchValueError", "BatchTypeError", "describe_value", "count_rows"]


class BatchError(Exception):
    """A batch that cannot be monitored; ``reason`` says why, ``rows`` how many rows.

    ``reason`` is one of :data:`mlwatcher_exporter.naming.REJECT_REASONS` (or, for a part
    of a batch, of :data:`~mlwatcher_exporter.naming.DROP_REASONS`).
    """

    def __init__(self, message: str, reason: str, rows: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.rows = rows


class BatchValueError(BatchError, ValueError):
    """A batch with the right types but wrong shapes or values."""


class BatchTypeError(BatchError, TypeError):
    """A batch that is not a numeric table."""


def describe_value(value: Any) -> str:
    """Short description of a value for an error message (never its whole content)."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        dtypes = getattr(value, "dtypes", None)
        if dtypes is not None and hasattr(dtypes, "items"):  # a DataFrame
            kinds = sorted({str(dtype) for _, dtype in dtypes.items()})
            return f"{type(value).__name__} of shape {tuple(shape)} and dtypes {kinds[:5]}"
        dtype = getattr(value, "dtype", None)
        text = f"{type(value).__name__} of shape {tuple(shape)}"
        return text if dtype is None else f"{text} and dtype {dtype}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of length {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def count_rows(value: Any) -> int:
    """Rows of a batch for the rejection counter: its length when it has one, else 1."""
    if isinstance(value, (str, bytes)):
        return 1
    try:
        shape = getattr(value, "shape", None)
        return int(shape[0]) if shape else int(len(value))
    except Exception:  # noqa: BLE001 - anything without a length is one bad row
        return 1
