"""JSON as other programs read it: strict JSON, so NaN and infinities (which Python's json writes as bare `NaN`,
`Infinity`, not JSON) become null. Every JSON the user or a script reads goes through `dumps_json`: the CLI's
--json output, config.json, evaluation summaries, events.jsonl, and the JSON kept in the catalog."""

from __future__ import annotations

import json
import math
from typing import Any


def finite_json(obj: Any) -> Any:
    """`obj` with every non-finite float (NaN, +-inf) replaced by None, through dicts, lists and tuples; numpy
    scalars become Python numbers on the way (a float32 NaN would otherwise reach `default=str` as 'nan')."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if type(obj).__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        return finite_json(obj.item())
    return obj


def dumps_json(obj: Any, **options: Any) -> str:
    """`json.dumps` that writes null for NaN and infinities; `allow_nan=False` guards against any that a
    `default` hook could still produce (it raises rather than write invalid JSON)."""
    return json.dumps(finite_json(obj), allow_nan=False, **options)
