"""How numbers read in plain text (CLI tables, progress lines, exported Markdown): one formatter for all."""

from __future__ import annotations

from typing import Any


def fmt_value(value: Any, digits: int = 4) -> str:
    """A cell or a metric as text: '-' for a missing value, a float to `digits` decimals, anything else as str."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_duration(seconds: Any) -> str:
    """An ETA or elapsed time: 'm:ss', or 'h:mm:ss' from an hour on; '?' when unknown."""
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
