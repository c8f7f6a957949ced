"""Metadata values worth opening in the Dagster UI: tables, schemas, images, links."""

from __future__ import annotations

import base64
import hashlib

import dagster as dg
import pandas as pd

_PANDAS_TO_TYPE = {"i": "integer", "u": "integer", "f": "float", "b": "boolean", "M": "datetime", "O": "string"}


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=str(name), type=_PANDAS_TO_TYPE.get(dtype.kind, str(dtype)))
            for name, dtype in frame.dtypes.items()
        ]
    )


def table_metadata(frame: pd.DataFrame, preview_rows: int = 10) -> dict[str, dg.MetadataValue]:
    """Row count, column schema and a Markdown preview of the first rows."""
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(frame)),
        "preview": dg.MetadataValue.md(markdown_table(frame.head(preview_rows))),
    }


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


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of a frame: the same rows and values give the same snapshot id."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]
