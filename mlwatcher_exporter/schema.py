"""The learned schema of a model's inputs: its classes, its feature columns, which of
them are categorical, and the vocabulary of its text columns.

Declared by the constructor or learned from the first batch that has them, once, under
one lock, and atomically: a batch that does not fit teaches nothing (a first DataFrame
that lacks a declared categorical column is refused and the next correct one is the
first). After that, the request path reads it without the lock.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .errors import BatchValueError
from .naming import OTHER_VALUE
from .tables import FeatureTable, is_missing
from .validation import ClassIndex

__all__ = ["InputSchema", "Vocabulary", "VOCABULARY_SIZE"]

# Distinct values remembered per text column; later new values count as __other__.
VOCABULARY_SIZE = 1000


class Vocabulary:
    """Codes of a text column's values, bounded: beyond `size` values, new ones share
    one code, named ``__other__``."""

    def __init__(self, size: int = VOCABULARY_SIZE) -> None:
        self._codes: Dict[str, int] = {}
        self.names: List[str] = []
        self._size = size

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Float codes of `values` (NaN where missing)."""
        codes = np.empty(len(values), dtype=np.float64)
        for row, value in enumerate(values.tolist()):
            if is_missing(value):
                codes[row] = np.nan
                continue
            text = str(value)
            code = self._codes.get(text)
            if code is None:
                if len(self._codes) < self._size:
                    code = self._codes[text] = len(self.names)
                    self.names.append(text)
                else:
                    code = self._size
            codes[row] = code
        return codes

    def value_names(self) -> List[str]:
        """Names by code; the code after the last name is ``__other__``."""
        return [*self.names, OTHER_VALUE]


class InputSchema:
    """What the monitor knows of a model's inputs.

    Parameters
    ----------
    classes : sequence or None
        Class values in column order, when declared.
    feature_names : sequence of str or None
        Declared feature names.
    categorical_features : sequence of str or int
        Features (by name or position) described by value ratios.
    """

    def __init__(
        self,
        classes: Optional[Sequence[Any]],
        feature_names: Optional[Sequence[str]],
        categorical_features: Sequence[Union[str, int]],
    ) -> None:
        self._lock = threading.Lock()
        self.classes: Optional[ClassIndex] = None
        self.n_classes: Optional[int] = None
        self.index_labels = False
        #: Columns of a numeric feature array that needs no conversion; -1 until known
        #: or when some column is text (the request path's fast case).
        self.plain_width = -1
        if classes is not None:
            self.set_classes(classes)
        self.feature_names: Optional[List[str]] = (
            None if feature_names is None else [str(name) for name in feature_names]
        )
        self.categorical_features = tuple(categorical_features)
        #: Feature columns, known from `feature_names` or the first batch with features.
        self.n_features: Optional[int] = None
        #: Per feature column, whether it is described by value ratios.
        self.categorical: Optional[np.ndarray] = None
        #: Positions of the DataFrame columns kept as text.
        self.text_columns: List[int] = []
        self.vocabularies: Dict[int, Vocabulary] = {}

    # ------------------------------------------------------------------ classes
    def set_classes(self, classes: Sequence[Any]) -> None:
        """Fix the classes (before any batch was counted)."""
        index = ClassIndex(list(classes))
        self.classes = index
        self.n_classes = index.n_classes
        #: Whether integer labels are class indices (the request path's fast case).
        self.index_labels = index.is_range or index.classes.dtype.kind not in "iufb"

    def adopt_classes(self, classes: Sequence[Any], keep_known: bool, owner: str) -> bool:
        """Take an estimator's ``classes_``, unless classes are known and `keep_known`;
        return whether they were taken.

        Raises
        ------
        ValueError
            When their number differs from the known one (`owner` names the monitor).
        """
        classes = list(classes)
        with self._lock:
            if self.n_classes is not None:
                if len(classes) != self.n_classes:
                    raise ValueError(
                        f"estimator.classes_ has {len(classes)} classes, must match "
                        f"n_classes == {self.n_classes} of {owner}"
                    )
                if keep_known:
                    return False
            self.set_classes(classes)
            return True

    def learn_classes(self, width: int, rows: int) -> ClassIndex:
        """The classes, 0..width-1 when none are known yet; unless another thread won.

        Raises
        ------
        BatchValueError
            For fewer than two columns.
        """
        with self._lock:
            if self.classes is None:
                if width < 2:
                    raise BatchValueError(
                        f"proba has {width} columns, must have at least 2 classes",
                        "n_classes",
                        rows,
                    )
                self.set_classes(range(width))
            assert self.classes is not None
            return self.classes

    # ------------------------------------------------------------------ features
    def learn_features(self, table: FeatureTable, rows: int) -> None:
        """Learn the features from the first batch that has them, or check that a later
        batch has the same columns.

        Raises
        ------
        BatchValueError
            ``reason`` "n_features": other columns, or a declared categorical feature
            the columns lack. Nothing is learned then.
        """
        width = table.numeric.shape[1]
        if self.n_features is None:
            with self._lock:
                if self.n_features is None:
                    self._learn(table, width, rows)
                    return
        if width != self.n_features:
            raise BatchValueError(
                f"features has {width} columns, must have n_features == {self.n_features}",
                "n_features",
                rows,
            )
        if table.names is not None and self.feature_names is not None and (
            table.names != self.feature_names
        ):
            raise BatchValueError(
                f"features columns {table.names[:5]} differ from feature_names "
                f"{self.feature_names[:5]}, must be the same columns in the same order",
                "n_features",
                rows,
            )

    def _learn(self, table: FeatureTable, width: int, rows: int) -> None:
        names = self.feature_names
        if names is None:
            names = table.names or [f"f{i}" for i in range(width)]
        elif len(names) != width:
            raise BatchValueError(
                f"features has {width} columns, must have n_features == {len(names)} "
                "(the length of feature_names)",
                "n_features",
                rows,
            )
        elif table.names is not None and table.names != names:
            raise BatchValueError(
                f"features columns {table.names[:5]} differ from feature_names "
                f"{names[:5]}, must be the same columns in the same order",
                "n_features",
                rows,
            )
        mask = np.zeros(width, dtype=bool)
        for ref in self.categorical_features:
            if isinstance(ref, str):
                if ref not in names:
                    raise BatchValueError(
                        f"features has columns {names[:10]}, must include "
                        f"categorical_features {ref!r}",
                        "n_features",
                        rows,
                    )
                mask[names.index(ref)] = True
            elif not 0 <= ref < width:
                raise BatchValueError(
                    f"features has {width} columns, must have more than "
                    f"categorical_features index {ref}",
                    "n_features",
                    rows,
                )
            else:
                mask[ref] = True
        text = sorted(table.text)
        mask[text] = True
        # Published last: readers without the lock test n_features first.
        self.feature_names = list(names)
        self.categorical = mask
        self.text_columns = text
        self.vocabularies = {column: Vocabulary() for column in text}
        self.n_features = width
        self.plain_width = -1 if text else width

    def encode(self, column: int, values: np.ndarray) -> np.ndarray:
        """Codes of a text column's values (under the processing lock)."""
        return self.vocabularies[column].encode(values)

    def value_names(self) -> Dict[str, List[str]]:
        """Per text feature, the names of its codes."""
        names = self.feature_names or []
        return {names[c]: v.value_names() for c, v in self.vocabularies.items()}
