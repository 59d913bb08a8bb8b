"""The catalog (DuckDB) and the run artifacts (Parquet, JSONL).

Imports neither torch nor textual: every process that touches the workspace can use it cheaply.
"""

from storage.catalog import CatalogLockedError, open_catalog
from storage.workspace import Workspace, resolve_workspace

__all__ = ["CatalogLockedError", "Workspace", "open_catalog", "resolve_workspace"]
