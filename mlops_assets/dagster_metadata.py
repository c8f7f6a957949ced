"""Metadata values worth opening in the Dagster UI: row counts, column schemas, previews."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from mlops_assets.markdown import markdown_table

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
