"""Markdown for people: tables and inline images, shared by the Dagster UI metadata and the model card."""

from __future__ import annotations

import base64

import pandas as pd


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A Markdown table without the tabulate dependency."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return format(value, floatfmt)
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def png_data_uri(png: bytes) -> str:
    """A PNG as a link that Markdown viewers (the Dagster UI among them) render inline."""
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def png_markdown(png: bytes, alt: str) -> str:
    return f"![{alt}]({png_data_uri(png)})"
