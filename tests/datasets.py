"""A second, differently shaped dataset the tests generate: loan applications.

No entity id, no event time (row number and load time stand in), a string target
("no"/"yes"), a free-text column, a nullable column and a derived feature: the
platform must run its whole graph from the YAML alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def make_loans(rows: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(mean=10.5, sigma=0.5, size=rows).round(2)
    debt_ratio = rng.beta(2, 5, size=rows).round(4)
    years_employed = rng.integers(0, 40, size=rows).astype(float)
    years_employed[rng.random(rows) < 0.05] = np.nan  # declared nullable
    employment = rng.choice(["salaried", "self_employed", "unemployed"], size=rows, p=[0.7, 0.2, 0.1])
    purpose = rng.choice(["car", "home improvement", "debt consolidation", "other"], size=rows)
    age_group = rng.choice(["young", "middle", "senior"], size=rows)
    logit = -1.5 + 4 * debt_ratio - 0.00002 * (income - 36000) + 1.2 * (employment == "unemployed") - 0.02 * np.nan_to_num(years_employed)
    defaulted = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame({
        "income": income, "debt_ratio": debt_ratio, "years_employed": years_employed,
        "employment_type": employment, "purpose": purpose, "age_group": age_group, "defaulted": defaulted,
    })


LOANS_CONFIG = {
    "name": "loans",
    "description": "Loan applications (test dataset): will the applicant default?",
    "owners": ["team:credit-risk"],
    "source": {"path": "loans.csv"},
    "target": "defaulted",
    "positive_class": "yes",
    "sensitive_attributes": ["age_group"],
    "columns": {
        "income": {"type": "float", "min": 0},
        "debt_ratio": {"type": "float", "min": 0, "max": 1},
        "years_employed": {"type": "integer", "min": 0, "nullable": True},
        "employment_type": {"type": "categorical", "values": ["salaried", "self_employed", "unemployed"]},
        "purpose": {"type": "string"},
        "age_group": {"type": "categorical", "values": ["young", "middle", "senior"]},
        "defaulted": {"type": "categorical", "values": ["no", "yes"]},
    },
    "features": ["income", "debt_ratio", "years_employed", "employment_type", "purpose"],
    "derived_features": {"monthly_debt": "income * debt_ratio / 12"},
    "model": {"family": "logistic_regression", "params": {"C": 1.0}},
    "drift": {"current_rows": 500},
}


def write_loans(folder: Path, frame: pd.DataFrame, file_format: str = "csv") -> Path:
    """The data file and its YAML config in ``folder``; returns the folder (an MLOPS_CONFIGS)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {**LOANS_CONFIG, "source": {"path": f"loans.{file_format}"}}
    if file_format == "csv":
        frame.to_csv(folder / "loans.csv", index=False)
    else:
        frame.to_parquet(folder / "loans.parquet", index=False)
    (folder / "loans.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder
