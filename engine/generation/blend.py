"""`blend` (seed 004): a training set mixing real and generated examples at a ratio, at a fixed total.

No LLM: a seeded draw of `total * ratio` generated and the rest real examples, shuffled together. Each example is
kept exactly as it is in its source (text, context, answers, label); only its id gets the part as a prefix, so the
two sources can never collide, and its provenance says which part and which source example it came from.
"""

from __future__ import annotations

from typing import Any

from engine.errors import BadInputError

PARTS = ("real", "generated")


def blend_counts(total: int, ratio: float) -> tuple[int, int]:
    """(real, generated) counts: `ratio` is the generated share, rounded half to even."""
    generated = round(total * ratio)
    return total - generated, generated


def blend_rows(
    real: list[dict[str, Any]], generated: list[dict[str, Any]], total: int, ratio: float, seed: int
) -> list[tuple[str, dict[str, Any]]]:
    """(part, source row) pairs, `total` of them, in a seeded order."""
    import numpy as np

    n_real, n_generated = blend_counts(total, ratio)
    for part, rows, wanted in (("real", real, n_real), ("generated", generated, n_generated)):
        if wanted > len(rows):
            raise BadInputError(
                f"a blend of {total} at ratio {ratio:g} needs {wanted} {part} examples; the {part} dataset has "
                f"{len(rows)}: lower --n or change --ratio"
            )
    rng = np.random.default_rng(seed)
    picked = [("real", real[int(i)]) for i in sorted(rng.permutation(len(real))[:n_real])]
    picked += [
        ("generated", generated[int(i)]) for i in sorted(rng.permutation(len(generated))[:n_generated])
    ]
    order = rng.permutation(len(picked))
    return [picked[int(i)] for i in order]
