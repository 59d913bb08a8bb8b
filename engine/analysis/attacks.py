"""Attack results (engine.jobs.attack) as the app and scripts read them, torch-free: the attacks with their
figures (Clean%, Aua%, success rate, #Query), one attack's per-example rows, and the word segmentation that
"changed word positions" index into (the attacks themselves use it too: one definition of a word).

A text is separators and words alternately (`split_words`: a word is a run of `\\w` characters); an attack
replaces whole words only, so the perturbed text has the same separators and the same number of words.
"""

from __future__ import annotations

import re
from typing import Any

import duckdb

from engine.analysis.sql import rows_as_dicts

WORD = re.compile(r"(\w+)")
STATUSES = ("succeeded", "failed", "skipped")


def split_words(text: str) -> list[str]:
    """Separators and words alternately: parts[0] a separator (maybe empty), words at the odd positions."""
    return WORD.split(text)


def words_of(text: str) -> list[str]:
    return split_words(text)[1::2]


def join_words(parts: list[str], replace: dict[int, str]) -> str:
    """The text of `parts` with word i (an index into the words) replaced by replace[i]."""
    out = list(parts)
    for i, word in replace.items():
        out[2 * i + 1] = word
    return "".join(out)


def changed_positions(original: str, perturbed: str) -> list[int] | None:
    """The word positions where `perturbed` differs from `original`; None when they differ elsewhere (a
    separator, the number of words)."""
    a, b = split_words(original), split_words(perturbed)
    if len(a) != len(b) or a[0::2] != b[0::2]:
        return None
    return [i for i, (x, y) in enumerate(zip(a[1::2], b[1::2])) if x != y]


def marked_segments(text: str, changed: list[int] | None) -> list[tuple[str, bool]]:
    """The text as (segment, changed) pieces, for showing the changed words highlighted."""
    marked = set(changed or [])
    parts = split_words(text)
    return [(part, k % 2 == 1 and (k - 1) // 2 in marked) for k, part in enumerate(parts) if part]


def list_attacks(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every attack with its figures, oldest first."""
    cur = con.execute(
        """SELECT a.run_id, a.source_run, a.dataset, a.method, a.n_examples, a.clean_accuracy, a.aua,
                  a.success_rate, a.avg_queries
           FROM attacks a LEFT JOIN runs r USING (run_id) ORDER BY r.created_at, a.run_id"""
    )
    return rows_as_dicts(cur)


def attack_examples(
    con: duckdb.DuckDBPyConnection, run_id: str, status: str | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    """One attack's per-example rows (succeeded first), optionally of one status only."""
    where, params = "run_id = ?", [run_id]
    if status is not None:
        where += " AND status = ?"
        params.append(status)
    cur = con.execute(
        f"""SELECT example_id, status, label, text, perturbed_text, prediction_before, prediction_after,
                   queries, changed_words, similarity
            FROM attack_results WHERE {where}
            ORDER BY CASE status WHEN 'succeeded' THEN 0 WHEN 'failed' THEN 1 ELSE 2 END, example_id
            LIMIT ?""",
        [*params, int(limit)],
    )
    return rows_as_dicts(cur)
