"""The runs' fitted map bounds, fitted once per run and number of metrics epochs in this process: a fit scans the
run's metrics (engine.analysis.bounds; about 80-130 ms at 1M examples), and its inputs change only when the run
gains an epoch of metrics. The app's data map and map diff share it (one process, many opens of a map)."""

from __future__ import annotations

import duckdb

from engine.analysis.bounds import fitted_map_bounds
from engine.analysis.regions import Bounds
from storage.workspace import Workspace

# (workspace, run, metrics epochs, robustness fitted too) -> the run's fitted bounds
_FITTED_CACHE: dict[tuple[str, str, int, bool], Bounds] = {}


def cached_fitted_bounds(
    con: duckdb.DuckDBPyConnection, ws: Workspace, run_id: str, adversarial: bool = True
) -> Bounds:
    """The run's fitted bounds (`fitted_map_bounds`), from the cache when its metrics have not changed since."""
    row = con.execute("SELECT metrics_epochs FROM runs WHERE run_id = ?", [run_id]).fetchone()
    key = (str(ws.root), run_id, int(row[0] or 0) if row else 0, adversarial)
    if key not in _FITTED_CACHE:
        _FITTED_CACHE[key] = fitted_map_bounds(con, run_id, adversarial=adversarial)
    return _FITTED_CACHE[key]
