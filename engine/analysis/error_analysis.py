"""Error analysis across adversarial variants (seed 000's open question: why do hard-to-learn training examples
help on AddOneSent but not on AddSent?), torch-free: per original question of an evaluated adversarial set,

- which variants fooled the model: `fooled` = the model answered the original right (exact match) and the
  variant wrong;
- whether a variant's predicted span came from the inserted sentence: the variant's context is the original's
  with a distractor inserted (`inserted_span`); `from_inserted` is True when the predicted text occurs in the
  inserted text and nowhere in the original context, False when only in the original context, None when it
  cannot tell (no answer or no letter or digit, both, or a span across the boundary);
- the training-map region of the original's nearest training examples: `neighbours` (from
  engine.evaluation.neighbours: the run's encoder, mean-pooled, cosine) with their cartography region under the
  boundaries of the run's data map (fitted to the run, engine.analysis.bounds), counted per region.

`adversarial_questions` reads what the catalog has (the set's examples with the run's stored predictions);
`error_table` joins in the neighbours' regions and makes the rows the app and `dynascope error-analysis` show.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from typing import Any

import duckdb

from engine.analysis.regions import CARTOGRAPHY_REGIONS, region_sql
from engine.analysis.sql import rows_as_dicts
from engine.errors import BadInputError


def inserted_span(original: str, variant: str) -> tuple[int, int] | None:
    """[start, end) in `variant` of the text it adds to `original` (the longest inserted or replacing block);
    None when the variant adds nothing."""
    matcher = difflib.SequenceMatcher(None, original, variant, autojunk=False)
    blocks = [(j1, j2) for tag, _, _, j1, j2 in matcher.get_opcodes() if tag in ("insert", "replace")]
    return max(blocks, key=lambda b: b[1] - b[0]) if blocks else None


def from_inserted(prediction: str | None, original: str, inserted: str) -> bool | None:
    if not prediction or not any(ch.isalnum() for ch in prediction):
        return None  # no answer (or a lone punctuation mark): nowhere to come from
    in_inserted, in_original = prediction in inserted, prediction in original
    if in_inserted != in_original:
        return in_inserted
    return None


def adversarial_questions(con: duckdb.DuckDBPyConnection, run_id: str, eval_set: str) -> list[dict[str, Any]]:
    """Per original question of `eval_set` (an evaluated adversarial set), its prediction and its variants'
    (fooled, inserted text, from_inserted); originals in file order. BadInputError when the run was not
    evaluated on the set or the set has no adversarial variants."""
    found = con.execute(
        "SELECT count(*) FROM predictions WHERE run_id = ? AND eval_set = ?", [run_id, eval_set]
    ).fetchone()
    if not found or not found[0]:
        raise BadInputError(
            f"run {run_id} has no evaluation on '{eval_set}'; evaluate it first: dynascope eval {run_id} {eval_set}"
        )
    cur = con.execute(
        """SELECT e.example_id, coalesce(e.orig_id, e.example_id) AS original, e.orig_id IS NOT NULL AS is_variant,
                  e.text AS question, e.text_pair AS context, e.answers, p.prediction, p.correct, p.score
           FROM examples e JOIN predictions p
             ON p.run_id = ? AND p.eval_set = ? AND p.example_id = e.example_id
           WHERE e.dataset = ? ORDER BY e.row_idx""",
        [run_id, eval_set, eval_set],
    )
    rows = rows_as_dicts(cur)
    if not any(r["is_variant"] for r in rows):
        raise BadInputError(
            f"'{eval_set}' has no adversarial variants (no ids '<original>-<suffix>' beside their original); "
            "error analysis needs an adversarial set such as AddSent or AddOneSent"
        )
    by_original: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not row["is_variant"]:
            by_original[row["example_id"]] = {
                "original_id": row["example_id"],
                "question": row["question"],
                "context": row["context"],
                "golds": [a["text"] for a in json.loads(row["answers"] or "[]")],
                "prediction": row["prediction"],
                "correct": bool(row["correct"]),
                "f1": row["score"],
                "variants": [],
            }
    for row in rows:
        if not row["is_variant"] or row["original"] not in by_original:
            continue
        original = by_original[row["original"]]
        span = inserted_span(original["context"], row["context"])
        inserted = row["context"][span[0] : span[1]] if span else ""
        original["variants"].append(
            {
                "example_id": row["example_id"],
                "prediction": row["prediction"],
                "correct": bool(row["correct"]),
                "f1": row["score"],
                "fooled": original["correct"] and not row["correct"],
                "inserted": inserted,
                "inserted_span": list(span) if span else None,
                "from_inserted": from_inserted(row["prediction"], original["context"], inserted),
            }
        )
    return [q for q in by_original.values() if q["variants"]]


def training_examples(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[list[dict[str, Any]], str]:
    """The run's training examples that have map metrics, with their cartography region under the boundaries
    the run's data map uses (fitted to the run, engine.analysis.bounds), and that rule in words."""
    from engine.analysis.bounds import run_bounds

    row = con.execute("SELECT dataset FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise BadInputError(f"no run named '{run_id}'; see `dynascope runs`")
    bounds, rule = run_bounds(con, run_id, "cartography", None)
    cur = con.execute(
        f"""SELECT m.example_id, {region_sql("cartography", bounds)} AS region, m.confidence, m.variability,
                   e.text AS question, e.text_pair AS context
            FROM example_metrics m JOIN examples e ON e.dataset = ? AND e.example_id = m.example_id
            WHERE m.run_id = ? ORDER BY e.row_idx""",
        [row[0], run_id],
    )
    found = rows_as_dicts(cur)
    if not found:
        raise BadInputError(f"run {run_id} has no training map (no example metrics): nothing to compare with")
    return found, rule


def error_table(
    questions: list[dict[str, Any]],
    neighbours: dict[str, list[tuple[str, float]]],
    regions: dict[str, str | None],
) -> list[dict[str, Any]]:
    """One row per original question: its figures, its variants, and its nearest training examples' regions.
    `neighbours`: original id -> [(training example id, cosine similarity)], nearest first; `regions`: training
    example id -> cartography region."""
    rows = []
    for q in questions:
        near = [
            {"example_id": i, "similarity": round(float(s), 4), "region": regions.get(i)}
            for i, s in neighbours.get(q["original_id"], [])
        ]
        counts = Counter(n["region"] for n in near if n["region"])
        fooled = [v["example_id"] for v in q["variants"] if v["fooled"]]
        rows.append(
            {
                "original_id": q["original_id"],
                "question": q["question"],
                "golds": q["golds"],
                "prediction": q["prediction"],
                "correct": q["correct"],
                "n_variants": len(q["variants"]),
                "fooled": fooled,
                "from_inserted": sum(1 for v in q["variants"] if v["from_inserted"]),
                "variants": [{k: v for k, v in var.items() if k != "inserted_span"} for var in q["variants"]],
                "neighbours": near,
                "neighbour_regions": {r: counts.get(r, 0) for r in CARTOGRAPHY_REGIONS},
                "nearest_region": near[0]["region"] if near else None,
            }
        )
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over the table: originals, those fooled by some variant, fooled variants whose span came from the
    inserted sentence, and the share fooled per region of the nearest training example."""
    fooled = [r for r in rows if r["fooled"]]
    by_region: dict[str, dict[str, int]] = {}
    for r in rows:
        if r["nearest_region"] and r["correct"]:
            entry = by_region.setdefault(r["nearest_region"], {"originals_right": 0, "fooled": 0})
            entry["originals_right"] += 1
            entry["fooled"] += bool(r["fooled"])
    return {
        "n_originals": len(rows),
        "n_originals_right": sum(1 for r in rows if r["correct"]),
        "n_fooled": len(fooled),
        "n_fooled_variants": sum(len(r["fooled"]) for r in rows),
        "n_fooled_from_inserted": sum(
            1 for r in rows for v in r["variants"] if v["fooled"] and v["from_inserted"]
        ),
        "by_nearest_region": by_region,
    }


def adversarial_evaluations(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(run, set) of every evaluation on a set with adversarial variants, newest first: what can be analysed."""
    found = con.execute(
        """SELECT ev.run_id, ev.eval_set FROM evaluations ev
           WHERE ev.eval_set IN (SELECT DISTINCT dataset FROM examples WHERE orig_id IS NOT NULL)
           ORDER BY ev.created_at DESC, ev.run_id, ev.eval_set"""
    ).fetchall()
    return [(str(run), str(name)) for run, name in found]
