"""The raw-data contract a new user meets (issue 12): strict types, enough rows, a binary target, messages.

Every case writes a broken file or config the way a user would, and reads it through the
public path the `raw_rows` asset takes: `load_dataset_config`, `load_source`, `check_raw_rows`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops_assets.config import ConfigError, load_dataset_config
from mlops_assets.data.raw_checks import check_raw_rows
from mlops_assets.data.sources import SourceError, load_source, row_locator
from mlops_assets.features.training_set import binary_target
from tests.datasets import LOANS_CONFIG

HEADER = "income,debt_ratio,years_employed,employment_type,purpose,age_group,owns_home,defaulted"
GOOD_ROWS = [
    "52000.5,0.31,4,salaried,car,young,yes,no",
    "41000,0.12,,self_employed,other,middle,No,yes",
    "38000,0.44,12.0,salaried,home improvement,senior,TRUE,no",
    "61000,0.05,0,unemployed,car,young,n,yes",
    "45000,0.2,3,salaried,other,middle,1,no",
    "47000,0.25,7,salaried,car,senior,0,no",
    "39000,0.6,1,unemployed,other,young,Y,yes",
    "58000,0.15,20,self_employed,car,middle,false,no",
    "43000,0.33,5,salaried,other,senior, yes ,yes",
    "50000,0.28,9,salaried,car,young,FALSE,no",
]


def loans_with_sensitive_flag(**overrides) -> dict:
    """The test loans config plus `owns_home`, a boolean sensitive attribute."""
    config = yaml.safe_load(yaml.safe_dump(LOANS_CONFIG, sort_keys=False))
    config["columns"]["owns_home"] = {"type": "boolean"}
    config["sensitive_attributes"] = ["age_group", "owns_home"]
    config.update(overrides)
    return config


def write_dataset(folder: Path, rows: list[str], config: dict | str, header: str = HEADER) -> Path:
    """A CSV file as a user writes it (one line per string) and its config; returns the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loans.csv").write_text("\n".join([header, *rows]) + "\n")
    path = folder / "loans.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    return path


def check_file(folder: Path, rows: list[str], config: dict | str | None = None, header: str = HEADER):
    loaded = load_dataset_config(write_dataset(folder, rows, config or loans_with_sensitive_flag(), header))
    return loaded, check_raw_rows(loaded, load_source(loaded), row_locator(loaded))


# 1. Booleans --------------------------------------------------------------------------------

def test_boolean_spellings_are_read_as_written_never_by_truthiness(tmp_path):
    # "no"/"f"/"0" used to become True (pandera's coerce is Python truthiness); here on a sensitive attribute.
    config, verdict = check_file(tmp_path, GOOD_ROWS)
    assert verdict.passed, verdict.schema.summary()
    assert verdict.valid["owns_home"].tolist() == [True, False, True, False, True, False, True, False, True, False]
    assert verdict.valid["owns_home"].dtype == bool


def test_a_value_that_is_not_a_boolean_spelling_fails_the_schema_naming_line_and_row(tmp_path):
    rows = [*GOOD_ROWS]
    rows[2] = rows[2].replace(",TRUE,", ",maybe,")
    rows[6] = rows[6].replace(",Y,", ",2,")
    _, verdict = check_file(tmp_path, rows)
    assert not verdict.passed and verdict.failed_checks == ["raw_schema"]
    assert verdict.schema.summary() == (
        "2 of 10 rows invalid in columns ['owns_home']: owns_home: not a boolean (true/false, yes/no, y/n, 1/0): "
        "'maybe' (line 4, row_id 2), '2' (line 8, row_id 6)"
    )


def test_numeric_one_and_zero_are_booleans_but_other_numbers_are_not(tmp_path):
    config = load_dataset_config(write_dataset(tmp_path, GOOD_ROWS, loans_with_sensitive_flag()))
    frame = load_source(config)
    frame["owns_home"] = [1.0, 0.0, None, 1.0, 0.0, 1.0, 0.0, 1.0, 0.5, 0.0]  # a float column, as NaN makes it
    verdict = check_raw_rows(config, frame, row_locator(config))
    assert verdict.schema.summary() == (
        "2 of 10 rows invalid in columns ['owns_home']: owns_home: missing value: line 4, row_id 2; "
        "owns_home: not a boolean (true/false, yes/no, y/n, 1/0): 0.5 (line 10, row_id 8)"
    )


# 2. Integers ----------------------------------------------------------------------------------

def test_a_fraction_in_an_integer_column_fails_instead_of_being_truncated(tmp_path):
    rows = [*GOOD_ROWS]
    rows[0] = rows[0].replace(",4,", ",1169.7,")
    _, verdict = check_file(tmp_path, rows)
    assert verdict.schema.summary() == (
        "1 of 10 rows invalid in columns ['years_employed']: years_employed: not a whole number: 1169.7 "
        "(line 2, row_id 0)"
    )


def test_whole_floats_in_an_integer_column_are_integers(tmp_path):
    # "12.0" in the file, and a float column because the nullable column has a gap: both fine.
    _, verdict = check_file(tmp_path, GOOD_ROWS)
    years = verdict.valid["years_employed"]
    assert str(years.dtype) == "Int64" and years.tolist()[:3] == [4, pd.NA, 12]


# 5. The target --------------------------------------------------------------------------------

YES_NO_TARGET = """\
name: loans
source: {path: loans.csv}
target: defaulted
%s
columns:
  income: {type: float, min: 0}
  debt_ratio: {type: float, min: 0, max: 1}
  years_employed: {type: integer, min: 0, nullable: true}
  employment_type: {type: categorical}
  purpose: {type: string}
  age_group: {type: categorical, values: [young, middle, senior]}
  owns_home: {type: boolean}
  defaulted: {type: categorical}
features: [income, debt_ratio, years_employed, employment_type, purpose]
"""


def test_a_yes_no_target_without_values_needs_positive_class_when_the_config_loads(tmp_path):
    path = write_dataset(tmp_path, GOOD_ROWS, YES_NO_TARGET % "")
    with pytest.raises(ConfigError) as error:
        load_dataset_config(path)
    assert str(error.value) == (
        f"{path}: <top>: Value error, target 'defaulted' (type categorical) needs positive_class: the value that "
        "means positive (only a 0/1 or true/false target can go without)"
    )


def test_a_yes_no_target_with_positive_class_yes_unquoted_trains_on_yes_as_1(tmp_path):
    # Unquoted `yes` is the boolean True in YAML 1.1 (PyYAML); the config reads it as the text "yes".
    config, verdict = check_file(tmp_path, GOOD_ROWS, YES_NO_TARGET % "positive_class: yes")
    assert config.positive_class == "yes"
    assert verdict.passed, verdict.schema.summary()
    (target,) = [r for r in verdict.rules if r.name == "target_classes"]
    assert target.message == "target 'defaulted': classes 'no' and 'yes', positive 'yes': 4 of 10 rows (40.0%)"
    assert binary_target(verdict.valid, config).tolist() == [0, 1, 0, 1, 0, 0, 1, 0, 1, 0]


def test_listed_yes_no_values_are_text_and_need_positive_class(tmp_path):
    config = YES_NO_TARGET.replace("defaulted: {type: categorical}", "defaulted: {type: categorical, values: [no, yes]}")
    path = write_dataset(tmp_path, GOOD_ROWS, config % "")
    with pytest.raises(ConfigError, match=r"target 'defaulted' \(values \['no', 'yes'\]\) needs positive_class"):
        load_dataset_config(path)
    write_dataset(tmp_path, GOOD_ROWS, config % "positive_class: Yes")
    with pytest.raises(ConfigError, match=r"positive_class 'Yes' is not one of the target's values \['no', 'yes'\]"):
        load_dataset_config(path)


@pytest.mark.parametrize(
    ("targets", "positive", "message"),
    [
        ([1, 2, 3, 1, 2, 3, 1, 2, 3, 1], "", "target 'defaulted' holds 3 classes (1, 2, 3); a binary model needs "
         "exactly two: map the target to two values in the file"),
        ([0] * 10, "", "target 'defaulted' holds a single class (0 in all 10 rows); a binary model needs two"),
        ([1, 2] * 5, "", "target 'defaulted' holds 1 and 2: say which is positive with positive_class in the "
         "config (e.g. positive_class: 2)"),
        ([1, 2] * 5, "positive_class: 3", "positive_class 3 is not a value of target 'defaulted', which holds 1 and 2"),
    ],
    ids=["three-classes", "one-class", "no-positive-class", "positive-class-absent"],
)
def test_the_target_must_hold_two_classes_and_a_known_positive_one(tmp_path, targets, positive, message):
    config = YES_NO_TARGET.replace("defaulted: {type: categorical}", "defaulted: {type: integer}")
    rows = [",".join(r.split(",")[:-1] + [str(t)]) for r, t in zip(GOOD_ROWS, targets)]
    _, verdict = check_file(tmp_path, rows, config % positive)
    (target,) = [r for r in verdict.rules if r.name == "target_classes"]
    assert not target.passed and target.message == message
    assert verdict.failed_checks == ["target_classes"]


def test_a_target_with_gaps_is_refused_when_the_config_loads(tmp_path):
    config = YES_NO_TARGET.replace("defaulted: {type: categorical}", "defaulted: {type: categorical, nullable: yes}")
    path = write_dataset(tmp_path, GOOD_ROWS, config % "positive_class: yes")
    with pytest.raises(ConfigError, match=r"target 'defaulted' cannot be nullable: a row without a label can be "
                                          r"neither learned from nor evaluated \(leave such rows out of the source\)"):
        load_dataset_config(path)


def test_a_zero_one_target_needs_no_positive_class(tmp_path):
    config = YES_NO_TARGET.replace("defaulted: {type: categorical}", "defaulted: {type: integer}")
    rows = [",".join(r.split(",")[:-1] + [str(i % 2)]) for i, r in enumerate(GOOD_ROWS)]
    loaded, verdict = check_file(tmp_path, rows, config % "")
    assert verdict.passed and binary_target(verdict.valid, loaded).tolist() == [0, 1] * 5


# 4. Too few rows ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "no rows: the source holds no data (a header-only file?); the train/validation/test split needs at "
             "least 10"),
        (GOOD_ROWS[:4], "4 rows: too few, the train/validation/test split needs at least 10"),
    ],
    ids=["header-only", "four-rows"],
)
def test_a_source_with_too_few_rows_fails_the_row_count_check(tmp_path, rows, message):
    _, verdict = check_file(tmp_path, rows)
    (count,) = [r for r in verdict.rules if r.name == "row_count"]
    assert not count.passed and count.message == message
    assert not verdict.passed


# 7, 8. Sources and configs that cannot be read -------------------------------------------------

def test_a_source_path_that_does_not_exist_is_a_config_error(tmp_path):
    path = tmp_path / "loans.yaml"
    path.write_text(yaml.safe_dump(loans_with_sensitive_flag(source={"path": "data/loans.csv"})))
    with pytest.raises(ConfigError) as error:
        load_dataset_config(path)
    assert str(error.value) == (f"{path}: source.path: {tmp_path / 'data' / 'loans.csv'} does not exist "
                                "(a relative path is relative to the config's folder)")


def test_the_prediction_service_loads_a_config_whose_training_file_is_not_there(tmp_path):
    # A Bento ships the configs, not the training data; serving never reads the rows.
    path = tmp_path / "loans.yaml"
    path.write_text(yaml.safe_dump(loans_with_sensitive_flag()))
    assert load_dataset_config(path, require_source=False).name == "loans"


def test_an_empty_source_file_is_a_source_error(tmp_path):
    config = load_dataset_config(write_dataset(tmp_path, [], loans_with_sensitive_flag()))
    (tmp_path / "loans.csv").write_text("")
    with pytest.raises(SourceError) as error:
        load_source(config)
    assert str(error.value) == f"dataset 'loans': source file {tmp_path / 'loans.csv'} is empty (not even a header)"


def test_a_column_without_a_name_in_the_config_is_refused_pointing_at_unnamed(tmp_path):
    config = loans_with_sensitive_flag()
    config["columns"][""] = {"type": "integer"}
    path = write_dataset(tmp_path, GOOD_ROWS, config)
    with pytest.raises(ConfigError, match=r"columns: Value error, a column name cannot be empty; pandas reads an "
                                          r"empty CSV header as 'Unnamed: <position>' \(from 0\), so declare a first "
                                          r"column without a name as \"Unnamed: 0\""):
        load_dataset_config(path)


def test_an_r_style_row_number_column_is_explained_and_can_be_declared_as_unnamed_0(tmp_path):
    rows = [f"{i + 1},{row}" for i, row in enumerate(GOOD_ROWS)]  # R's write.csv: an empty first header
    config = loans_with_sensitive_flag(entity_id="application")
    config["columns"]["application"] = {"type": "integer", "unique": True}
    loaded = load_dataset_config(write_dataset(tmp_path, rows, config, header="," + HEADER))
    with pytest.raises(SourceError) as error:
        load_source(loaded)
    assert str(error.value).endswith(
        "Its header has 1 empty name(s), which pandas reads as ['Unnamed: 0'] (the number is the column's "
        "position from 0): name the column in the file, or declare it under that name (a row-number column as "
        "the entity id: entity_id: \"Unnamed: 0\")"
    )
    assert "source lacks declared columns ['application']" in str(error.value)

    config = loans_with_sensitive_flag(entity_id="Unnamed: 0")
    config["columns"]["Unnamed: 0"] = {"type": "integer", "unique": True}
    rows[3] = rows[3].replace("61000", "-1")
    loaded, verdict = check_file(tmp_path, rows, config, header="," + HEADER)
    assert verdict.schema.summary() == ("1 of 10 rows invalid in columns ['income']: income: below the minimum 0: -1.0 "
                                        "(line 5, Unnamed: 0 4)")


# 9. Messages ---------------------------------------------------------------------------------

def test_text_in_a_numeric_column_is_quoted_once_without_python_exception_text(tmp_path):
    # Used to be: coerce_dtype and dtype findings for the same cell, plus
    # TypeError("'>=' not supported between instances of 'str' and 'float'") from the min/max checks.
    rows = [*GOOD_ROWS]
    rows[1] = rows[1].replace("41000", "abc")
    rows[4] = rows[4].replace("0.2,", "n/a?,")
    rows[7] = rows[7].replace("58000", "-3")
    _, verdict = check_file(tmp_path, rows)
    summary = verdict.schema.summary()
    assert summary == (
        "3 of 10 rows invalid in columns ['debt_ratio', 'income']: income: not a number: 'abc' (line 3, row_id 1); "
        "income: below the minimum 0: -3.0 (line 9, row_id 7); debt_ratio: not a number: 'n/a?' (line 6, row_id 4)"
    )
    table = verdict.schema.failure_table()
    assert table.columns.tolist() == ["row_id", "location", "column", "problem", "value"]
    assert len(table) == 3  # one finding per bad cell: no "missing value" for the cells that were not numbers


def test_rows_are_named_by_their_line_in_the_file_across_blank_lines_and_quoted_line_breaks(tmp_path):
    ids = [f"A-{j:03d}" for j in range(10)]
    ids[8] = "A-004"  # repeated
    data = [f"{ids[j]},{row}" for j, row in enumerate(GOOD_ROWS)]
    data[1] = data[1].replace(",other,", ',"other,\nsee notes",')  # one row over lines 3 and 4
    data[5] = data[5].replace(",salaried,", ",astronaut,")
    lines = [*data[:3], "", *data[3:]]  # a blank line 6, which pandas skips
    config = loans_with_sensitive_flag(entity_id="application")
    config["columns"]["application"] = {"type": "string", "unique": True}
    _, verdict = check_file(tmp_path, lines, config, header="application," + HEADER)
    assert verdict.schema.summary() == (
        "3 of 10 rows invalid in columns ['application', 'employment_type']: employment_type: not one of the "
        "allowed values ['salaried', 'self_employed', 'unemployed']: 'astronaut' (line 9, application A-005); "
        "application: repeated value (must be unique): 'A-004' (line 8, application A-004), 'A-004' (line 12, "
        "application A-004)"
    )
    assert verdict.schema.failing_locations == ["line 8", "line 9", "line 12"]
    assert verdict.schema.failing_entities == ["A-004", "A-005"]

