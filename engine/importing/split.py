"""Split a SQuAD-format dataset by article (title) into two new datasets, so a run never trains and tests on the
same articles (SQuAD 2.0 train is not available here: its dev set, split by article, stands in for both).

The titles are sorted, shuffled with `random.Random(seed)` and the first `round(fraction * n_titles)` of them
(at least one, and at least one left over) go to the first part, every other title to the second: the same seed
always gives the same parts, the parts share no title, and every question lands in exactly one of them.
`fraction` is a share of the articles, not of the questions (articles differ in size).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import duckdb

from engine.errors import BadInputError
from storage.catalog import transaction
from storage.datasets import get_dataset, list_datasets

SPLIT_BY = ("title",)


@dataclass
class SplitPart:
    name: str
    n_titles: int
    n_examples: int


def default_names(dataset: str) -> tuple[str, str]:
    return f"{dataset}-train", f"{dataset}-test"


def plan_title_split(titles: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(first part's titles, second part's titles), each sorted; deterministic for a seed."""
    order = sorted(set(titles))
    random.Random(seed).shuffle(order)
    n_first = min(max(round(fraction * len(order)), 1), len(order) - 1)
    return sorted(order[:n_first]), sorted(order[n_first:])


def split_dataset(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    *,
    by: str = "title",
    fraction: float = 0.5,
    seed: int = 0,
    names: tuple[str, str] | None = None,
) -> tuple[SplitPart, SplitPart]:
    """Write the two parts of `dataset` as new datasets (in one transaction: both or neither)."""
    if by not in SPLIT_BY:
        raise BadInputError(f"--by {by!r}: a dataset can be split by {', '.join(SPLIT_BY)}")
    if not 0 < fraction < 1:
        raise BadInputError(f"--fraction must be between 0 and 1 (exclusive), got {fraction:g}")
    meta = get_dataset(con, dataset)
    if meta is None:
        known = ", ".join(d["name"] for d in list_datasets(con)) or "(none yet: dynascope import)"
        raise BadInputError(f"no dataset named '{dataset}'; known: {known}")
    if meta["task"] != "qa":
        raise BadInputError(
            f"'{dataset}' is a {meta['task']} dataset: --by title needs a SQuAD-format (QA) dataset, whose "
            "questions carry their article's title"
        )
    untitled, n_titles = con.execute(
        "SELECT count(*) FILTER (WHERE title IS NULL OR title = ''), count(DISTINCT title) "
        "FROM examples WHERE dataset = ?",
        [dataset],
    ).fetchone()  # type: ignore[misc]
    if untitled:
        raise BadInputError(
            f"'{dataset}': {untitled} questions have no article title, so they cannot be split by title"
        )
    if n_titles < 2:
        raise BadInputError(
            f"'{dataset}' has {n_titles} article title(s): splitting by title needs at least 2"
        )
    first_name, second_name = names or default_names(dataset)
    for name in (first_name, second_name):
        if not name.strip():
            raise BadInputError("the names of the two parts must not be empty")
        if get_dataset(con, name) is not None:
            raise BadInputError(
                f"a dataset named '{name}' already exists; choose other names (--train-name / --test-name)"
            )
    if first_name == second_name:
        raise BadInputError(f"the two parts need different names, both are '{first_name}'")
    titles = [
        r[0]
        for r in con.execute("SELECT DISTINCT title FROM examples WHERE dataset = ?", [dataset]).fetchall()
    ]
    first, second = plan_title_split(titles, fraction, seed)
    source = f"split of '{dataset}' by title (fraction {fraction:g} of the articles, seed {seed})"
    parts = []
    with transaction(con):
        for name, part, which in ((first_name, first, "first"), (second_name, second, "second")):
            con.execute("CREATE OR REPLACE TEMP TABLE split_titles (title VARCHAR)")
            con.executemany("INSERT INTO split_titles VALUES (?)", [[t] for t in part])
            con.execute(
                """INSERT INTO examples BY NAME
                   SELECT ? AS dataset, e.* EXCLUDE (dataset) FROM examples e
                   WHERE e.dataset = ? AND e.title IN (SELECT title FROM split_titles)""",
                [name, dataset],
            )
            n = con.execute("SELECT count(*) FROM examples WHERE dataset = ?", [name]).fetchone()[0]  # type: ignore[index]
            con.execute(
                """INSERT INTO datasets (name, task, n_examples, source, format, label_names, is_pair, version, parent)
                   SELECT ?, task, ?, ?, format, label_names, is_pair, version, name FROM datasets WHERE name = ?""",
                [name, n, f"{source}, {which} part", dataset],
            )
            parts.append(SplitPart(name, len(part), int(n)))
        con.execute("DROP TABLE split_titles")
    return parts[0], parts[1]
