"""Asset values between steps: Parquet for frames, JSON for the rest, rebuilt from the consumer's annotation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.io_manager import AssetValueError, ParquetJsonIOManager, from_jsonable, to_jsonable


@dataclass(frozen=True)
class Inner:
    name: str
    where: Path


@dataclass(frozen=True)
class OldReport:
    """What the producer returned (a class that was later renamed)."""

    inner: Inner
    scores: dict[str, float]
    files: dict[str, Path]
    parts: list[Inner] = field(default_factory=list)
    maybe: Path | None = None
    pair: tuple[int, str] = (0, "")


@dataclass(frozen=True)
class RenamedReport:
    """The same fields under a new class name, in the consumer's annotation."""

    inner: Inner
    scores: dict[str, float]
    files: dict[str, Path]
    parts: list[Inner] = field(default_factory=list)
    maybe: Path | None = None
    pair: tuple[int, str] = (0, "")


VALUE = OldReport(Inner("a", Path("/tmp/a.png")), {"auc": 0.9}, {"roc": Path("/tmp/roc.png")},
                  [Inner("b", Path("/x/b"))], None, (3, "three"))


def test_a_dataclass_round_trips_through_json_with_paths_nested_and_optional_fields():
    rebuilt = from_jsonable(to_jsonable(VALUE), OldReport)
    assert rebuilt == VALUE and isinstance(rebuilt.files["roc"], Path) and isinstance(rebuilt.parts[0], Inner)


def test_values_survive_a_rename_of_their_class_across_runs(tmp_path):
    """Materialize with one class, load later into a renamed one: no class path is stored."""

    @dg.asset
    def report() -> OldReport:
        return VALUE

    @dg.asset
    def frame() -> pd.DataFrame:
        out = pd.DataFrame({"split": pd.Categorical(["train", "test"], categories=["train", "test"], ordered=True),
                            "x": [1.5, 2.5]})
        out.attrs["manifest"] = {"content_hash": "abc"}
        return out

    seen = {}

    @dg.asset
    def consumer(report: RenamedReport, frame: pd.DataFrame) -> None:
        seen["report"], seen["frame"] = report, frame

    resources = {"io_manager": ParquetJsonIOManager(base_dir=str(tmp_path))}
    assert dg.materialize([report, frame], resources=resources).success
    assert (tmp_path / "report.json").exists() and (tmp_path / "frame.parquet").exists()
    assert "OldReport" not in (tmp_path / "report.json").read_text()
    assert dg.materialize([report, frame, consumer], selection=[consumer], resources=resources).success
    assert seen["report"] == RenamedReport(**VALUE.__dict__)
    assert seen["frame"]["split"].cat.ordered and seen["frame"].attrs["manifest"] == {"content_hash": "abc"}


def test_a_value_that_cannot_be_json_is_refused_naming_the_asset(tmp_path):
    @dg.asset
    def opaque() -> object:
        return object()

    with pytest.raises(AssetValueError, match="asset opaque: a object cannot be stored as JSON"):
        dg.materialize([opaque], resources={"io_manager": ParquetJsonIOManager(base_dir=str(tmp_path))})
