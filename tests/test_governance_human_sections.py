"""The card's human sections: read from the reviewed file, counted as missing when absent or unreviewed, never made up."""

from __future__ import annotations

import pytest

from mlops_assets.config import DatasetConfig
from mlops_assets.governance.human_sections import HumanSectionsError, load_human_sections
from tests.datasets import LOANS_CONFIG

REVIEWED = "---\nreviewed_by: Jane Doe\nreviewed_on: 2026-11-02\n---\n"


def loans_config(folder) -> DatasetConfig:
    return DatasetConfig(**LOANS_CONFIG, path=folder / "loans.yaml")


def test_a_reviewed_file_fills_its_sections_and_an_empty_or_absent_one_stays_missing(tmp_path):
    (tmp_path / "loans.card.md").write_text(REVIEWED + "## Intended use\nScreening only.\n\n## Out-of-scope uses\n\n"
                                            "## ethical considerations\nReviewed quarterly.\n")
    sections = load_human_sections(loans_config(tmp_path))
    assert sections.section("intended_use") == "Screening only."
    assert sections.section("ethical_considerations") == "Reviewed quarterly."  # headings match in any case
    assert sections.missing == ["Out-of-scope uses", "Limitations and caveats"]


def test_an_unreviewed_file_counts_every_section_as_missing_and_no_file_is_not_an_error(tmp_path):
    (tmp_path / "loans.card.md").write_text("## Intended use\nScreening only.\n")
    unreviewed = load_human_sections(loans_config(tmp_path))
    assert unreviewed.section("intended_use") is None and len(unreviewed.missing) == 4
    (tmp_path / "loans.card.md").unlink()
    assert len(load_human_sections(loans_config(tmp_path)).missing) == 4


@pytest.mark.parametrize("text, message", [
    (REVIEWED + "## Intended uses\nx\n", r"unknown section '## Intended uses'; the card takes '## Intended use'"),
    ("---\nreviewed_by: x\nsigned: y\n---\n## Intended use\nx\n", "front matter takes only reviewed_by and reviewed_on"),
])
def test_a_misspelt_heading_or_unknown_front_matter_is_refused_with_the_file_named(tmp_path, text, message):
    (tmp_path / "loans.card.md").write_text(text)
    with pytest.raises(HumanSectionsError, match=message) as error:
        load_human_sections(loans_config(tmp_path))
    assert "loans.card.md" in str(error.value)
