"""A full, ordered dump of a catalog: compare before and after to prove an operation changed nothing."""

from __future__ import annotations

from typing import Any

import duckdb

from storage.workspace import Workspace


def dump_catalog(ws: Workspace) -> dict[str, list[tuple[Any, ...]]]:
    if not ws.catalog_path.exists():
        return {}
    con = duckdb.connect(str(ws.catalog_path))
    try:
        tables = [
            r[0]
            for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()
        ]
        return {t: con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall() for t in tables}
    finally:
        con.close()
