"""What ``check-config`` says of the series a model's configuration will produce."""

from __future__ import annotations

from typing import Optional

from .budget import PARTS, estimate_series, plan_cut
from .config import MonitorSettings

__all__ = ["series_report"]


def series_report(settings: MonitorSettings) -> Optional[str]:
    """One line: series per part, the total, the budget and what it would cut; None when
    the classes or the features are not declared (they are learned from data then).

    Categorical features are counted at ``max_categories`` values plus ``__other__``.
    """
    n_classes = settings.n_classes
    if settings.class_names is not None:
        n_classes = len(settings.class_names)
    if n_classes is None or settings.feature_names is None:
        return None
    names = list(settings.feature_names)
    categorical = set()
    for ref in settings.categorical_features:
        categorical.add(names[ref] if isinstance(ref, int) else ref)
    layout = settings.fleet
    published = [name for name in names if layout.publishes(name)]
    n_categorical = sum(name in categorical for name in published)
    parts = estimate_series(n_classes, len(published) - n_categorical, n_categorical,
                            settings.max_categories, layout,
                            reference=settings.reference is not None)
    total = sum(parts.values())
    # One unit per part (a conservative cut: whole parts) is enough to say what goes.
    cut = plan_cut(parts["core"] - 2 - len(PARTS),
                   {part: [(part, parts[part])] if parts[part] else [] for part in PARTS},
                   layout.max_series)
    shown = ", ".join(f"{part} {parts[part]}" for part in ("core",) + PARTS if parts[part])
    line = (f"model {settings.model!r}: up to {total} series ({shown}); "
            f"max_series {layout.max_series}")
    if total <= layout.max_series:
        return line + ": nothing cut"
    cut_parts = [part for part in PARTS if cut.dropped.get(part)]
    return line + f": the budget cuts, in this order from the end, {', '.join(cut_parts)}"
