"""What raw rows must pass before they are stored: the schema, enough rows, a binary target.

All three run on every read and all three are reported, so a person fixes a file once,
not once per check. Rows that fail any of them are never written: the previous good
rows and everything built from them stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.data.coercion import finalize_types, quote, strict_types
from mlops_assets.data.schemas import raw_schema
from mlops_assets.data.validation import RowLocator, ValidationReport, validate
from mlops_assets.features.training_set import MIN_ROWS, binary_target


@dataclass(frozen=True)
class RuleResult:
    """One check over the whole table (not row by row): its verdict and a sentence that says why."""

    name: str
    passed: bool
    message: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RawRowsVerdict:
    schema: ValidationReport
    rules: list[RuleResult]

    @property
    def passed(self) -> bool:
        return self.schema.passed and all(rule.passed for rule in self.rules)

    @property
    def failed_checks(self) -> list[str]:
        return (["raw_schema"] if not self.schema.passed else []) + [r.name for r in self.rules if not r.passed]

    @property
    def valid(self) -> pd.DataFrame:
        """The typed rows, once every check passed."""
        assert self.passed and self.schema.valid is not None
        return self.schema.valid


def check_raw_rows(config: DatasetConfig, frame: pd.DataFrame, locate: RowLocator | None = None) -> RawRowsVerdict:
    """Type every column strictly, then check the schema, the row count and the target's classes."""
    typed = strict_types(frame, config)
    schema = validate(raw_schema(config), typed.frame, config.entity_column, findings=typed.findings, locate=locate)
    if schema.passed:
        assert schema.valid is not None
        schema.valid = finalize_types(schema.valid, config)
    return RawRowsVerdict(schema, [check_row_count(config, frame), check_target_classes(config, typed.frame)])


def check_row_count(config: DatasetConfig, frame: pd.DataFrame) -> RuleResult:
    """Enough rows for the train / validation / test split (features/training_set.py says how many)."""
    rows = len(frame)
    need = f"the train/validation/test split needs at least {MIN_ROWS}"
    if rows == 0:
        message = f"no rows: the source holds no data (a header-only file?); {need}"
    elif rows < MIN_ROWS:
        message = f"{rows} rows: too few, {need}"
    else:
        message = f"{rows} rows ({need})"
    return RuleResult("row_count", rows >= MIN_ROWS, message, {"rows": rows, "minimum": MIN_ROWS})


def check_target_classes(config: DatasetConfig, typed: pd.DataFrame) -> RuleResult:
    """Exactly two classes in the target, and the positive one known (``positive_class`` or 0/1, false/true).

    Values the schema refuses (not in ``values``, unreadable) are the schema's finding, not counted here.
    """
    name, spec = config.target, config.columns[config.target]
    present = typed[name].dropna() if name in typed else pd.Series(dtype=object)
    if spec.values is not None:
        present = present[present.astype(str).isin([str(v) for v in spec.values])]
    counts = present.value_counts()
    classes = list(counts.index)
    shown = " and ".join(quote(c) for c in sorted(classes, key=str)[:10])
    if len(classes) == 0:
        return RuleResult("target_classes", False, f"target {name!r} holds no values to learn from")
    if len(classes) == 1:
        return RuleResult("target_classes", False, f"target {name!r} holds a single class ({shown} in all "
                          f"{len(present)} rows); a binary model needs two")
    if len(classes) > 2:
        listed = ", ".join(quote(c) for c in sorted(classes, key=str)[:10]) + (", ..." if len(classes) > 10 else "")
        return RuleResult("target_classes", False, f"target {name!r} holds {len(classes)} classes ({listed}); a "
                          "binary model needs exactly two: map the target to two values in the file")
    labels = _labels(pd.DataFrame({name: pd.Series(classes, dtype=typed[name].dtype)}), config)
    if labels is None or sorted(labels) != [0, 1]:
        if config.positive_class is None:
            message = (f"target {name!r} holds {shown}: say which is positive with positive_class in the config "
                       f"(e.g. positive_class: {sorted(map(str, classes))[-1]})")
        else:
            message = f"positive_class {config.positive_class!r} is not a value of target {name!r}, which holds {shown}"
        return RuleResult("target_classes", False, message, {"classes": [str(c) for c in classes]})
    positives = int(counts[classes[labels.index(1)]])
    rate = positives / len(present)
    return RuleResult(
        "target_classes", True,
        f"target {name!r}: classes {shown}, positive {config.positive_label}: {positives} of {len(present)} rows "
        f"({rate:.1%})",
        {"classes": [str(c) for c in classes], "positive_class": str(classes[labels.index(1)]),
         "positive_rows": positives, "positive_rate": round(rate, 4)},
    )


def _labels(classes: pd.DataFrame, config: DatasetConfig) -> list[int] | None:
    """The 0/1 label of each class, by the one mapping training uses; None when it cannot map them."""
    try:
        return binary_target(classes, config).astype(int).tolist()
    except (ValueError, TypeError):
        return None
