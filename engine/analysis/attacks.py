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

from engine.analysis.runs import origin
from engine.analysis.sql import rows_as_dicts

WORD = re.compile(r"(\w+)")
STATUSES = ("succeeded", "failed", "skipped")
# QA attacks (negation, entity-rename) score every example: wrong-before is wrong before and after the attack,
# unattackable an example the attack could not change (attack_results.reason says why)
QA_STATUSES = ("succeeded", "failed", "wrong-before", "unattackable")
QA_METHODS = ("negation", "entity-rename")


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


def statuses_of(method: str | None) -> tuple[str, ...]:
    """The statuses an attack of `method` gives its examples."""
    return QA_STATUSES if method in QA_METHODS else STATUSES


def around_change(text: str, changed: list[int] | None, words_before: int = 6) -> tuple[str, list[int]]:
    """The text from a few words before its first changed word (a QA context is long: the change is what to
    see), with the changed positions re-indexed into it."""
    marked = sorted(changed or [])
    if not marked or marked[0] <= words_before:
        return text, marked
    parts = split_words(text)
    first = marked[0] - words_before  # the first word kept
    return "…" + "".join(parts[2 * first + 1 :]), [p - first for p in marked]


def list_attacks(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every attack with its figures, oldest first."""
    cur = con.execute(
        """SELECT a.run_id, a.source_run, a.dataset, a.method, a.n_examples, a.clean_accuracy, a.aua,
                  a.success_rate, a.avg_queries, a.clean_f1, a.f1, a.n_unattackable
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
        f"""SELECT example_id, status, label, text, text_pair, perturbed_text, prediction_before,
                   prediction_after, queries, changed_words, similarity, answers, perturbed_answers, f1_before,
                   f1_after, reason
            FROM attack_results WHERE {where}
            ORDER BY CASE status WHEN 'succeeded' THEN 0 WHEN 'failed' THEN 1 WHEN 'wrong-before' THEN 2 ELSE 3 END,
                     example_id
            LIMIT ?""",
        [*params, int(limit)],
    )
    return rows_as_dicts(cur)


# the paper's Table 3 order; a method not named here follows in name order
METHOD_ORDER = ("pgd", "word-swap", "char-swap")


def attack_table(con: duckdb.DuckDBPyConnection, runs: list[str] | None = None) -> list[dict[str, Any]]:
    """Runs under attack side by side, the shape of the paper's Table 3: one row per (attacked run, dataset), with
    Clean% and, per method, Aua% and #Query of the latest attack job of that (run, dataset, method) (latest by the
    attack run's creation time). Every run of `runs` gets at least one row (with no attacks when it has none);
    `runs` None: every attacked run, oldest first.

    Clean% comes from the attack rows, not from an evaluation: the share of the examples attacked (by any of the
    chosen attacks, each counted once, its latest attack's clean prediction) that the run classified correctly
    before the attack, so it is measured on the same examples as the Aua% beside it. Each attack keeps its own
    clean_accuracy too (equal to the row's when the attacks covered the same examples, as with the same --limit).
    Fractions in [0, 1]; #Query is the mean model queries per attacked example (correct before the attack)."""
    cur = con.execute(
        """WITH latest AS (
               SELECT a.*, coalesce(r.created_at, a.created_at) AS attacked_at
               FROM attacks a LEFT JOIN runs r USING (run_id)
               QUALIFY row_number() OVER (
                   PARTITION BY a.source_run, a.dataset, a.method ORDER BY attacked_at DESC, a.run_id DESC) = 1
           ),
           per_example AS (
               SELECT l.source_run, l.dataset, x.example_id,
                      arg_max(x.correct_before, l.attacked_at) AS correct_before
               FROM latest l JOIN attack_results x ON x.run_id = l.run_id
               WHERE x.status <> 'unattackable'  -- a QA attack's Aua% counts attacked examples only
               GROUP BY ALL
           ),
           clean AS (
               SELECT source_run, dataset, count(*) AS n_examples,
                      avg(CASE WHEN correct_before THEN 1.0 ELSE 0.0 END) AS clean_accuracy
               FROM per_example GROUP BY ALL
           )
           SELECT l.source_run, l.dataset, c.n_examples AS n_clean, c.clean_accuracy AS clean, l.method,
                  l.run_id, l.n_examples, l.clean_accuracy, l.aua, l.success_rate, l.avg_queries,
                  json_extract(r.config, '$.selection') AS selection
           FROM latest l LEFT JOIN clean c USING (source_run, dataset) LEFT JOIN runs r ON r.run_id = l.source_run
           ORDER BY r.created_at, l.source_run, l.dataset"""
    )
    found = rows_as_dicts(cur)
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for row in found:
        if runs is not None and row["source_run"] not in runs:
            continue
        key = (row["source_run"], row["dataset"])
        entry = by_key.setdefault(
            key,
            {
                "run_id": row["source_run"],
                "origin": origin(row),
                "dataset": row["dataset"],
                "n_examples": row["n_clean"] or 0,
                "clean_accuracy": row["clean"],
                "attacks": {},
            },
        )
        entry["attacks"][row["method"]] = {
            "attack_run": row["run_id"],
            "n_examples": row["n_examples"],
            "clean_accuracy": row["clean_accuracy"],
            "aua": row["aua"],
            "success_rate": row["success_rate"],
            "avg_queries": row["avg_queries"],
        }
    rows = list(by_key.values())
    if runs is not None:
        attacked = {r["run_id"] for r in rows}
        rows += [
            {
                "run_id": run,
                "origin": None,
                "dataset": None,
                "n_examples": 0,
                "clean_accuracy": None,
                "attacks": {},
            }
            for run in runs
            if run not in attacked
        ]
        order = {run: i for i, run in enumerate(runs)}
        rows.sort(key=lambda r: order[r["run_id"]])  # stable: a run's datasets stay in their order
    for row in rows:
        row["attacks"] = {m: row["attacks"][m] for m in attack_methods([row])}
    return rows


def attack_methods(rows: list[dict[str, Any]]) -> list[str]:
    """The methods present in `rows` (attack_table's), in the paper's order."""
    present = {m for row in rows for m in row["attacks"]}
    return [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))


def table3_columns(methods: list[str]) -> list[str]:
    """The figure columns of attack_table rows: Clean%, then per method its Aua% and #Query."""
    return ["Clean%"] + [name for m in methods for name in (f"{m} Aua%", f"{m} #Query")]


def table3_values(row: dict[str, Any], methods: list[str]) -> list[float | None]:
    """One attack_table row's figures in table3_columns order: percentages (0-100) and mean queries; None where
    the run has no such attack."""

    def pct(value: float | None) -> float | None:
        return None if value is None else 100.0 * value

    values = [pct(row["clean_accuracy"])]
    for method in methods:
        attack = row["attacks"].get(method) or {}
        values += [pct(attack.get("aua")), attack.get("avg_queries")]
    return values
