"""mlops-assets: one Dagster lineage graph for the whole ML lifecycle."""

__version__ = "0.1.0"
