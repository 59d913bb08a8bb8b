"""`dynascope split DATASET --by title`: on the real SQuAD v2.0 dev set (11,873 questions, 35 articles), the two
parts are deterministic by seed, share no article, and hold every question exactly once; bad requests are refused
with a clear message and change nothing."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.importing.split import plan_title_split
from storage.catalog import open_catalog
from storage.workspace import Workspace
from tests.conftest import run_cli

SQUAD_V2 = "squad_v2.0/dev-v2.0-reconstructed.json.gz"


@pytest.fixture(scope="module")
def squad2_ws(tmp_path_factory, data_dir) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("split") / "ws").create()
    assert run_cli(ws, "import", str(data_dir / SQUAD_V2), "--name", "sq2").code == 0
    assert run_cli(ws, "import", str(data_dir / "sst2" / "dev.tsv"), "--name", "sst2").code == 0
    return ws


def rows(ws: Workspace, dataset: str) -> dict[str, str]:
    """example_id -> title."""
    with open_catalog(ws, read_only_ok=True) as con:
        found = con.execute("SELECT example_id, title FROM examples WHERE dataset = ?", [dataset]).fetchall()
    return dict(found)  # type: ignore[arg-type]


def names(ws: Workspace) -> list[str]:
    with open_catalog(ws, read_only_ok=True) as con:
        return sorted(r[0] for r in con.execute("SELECT name FROM datasets").fetchall())


def test_split_by_title_is_disjoint_covers_every_question_once_and_is_deterministic(squad2_ws):
    ws = squad2_ws
    done = run_cli(ws, "split", "sq2", "--by", "title", "--fraction", "0.5", "--seed", "7", "--json")
    assert done.code == 0, done.stderr
    parts = done.json()
    assert [p["name"] for p in parts] == ["sq2-train", "sq2-test"]
    whole, train, test = rows(ws, "sq2"), rows(ws, "sq2-train"), rows(ws, "sq2-test")
    assert len(whole) == 11873
    assert not set(train) & set(test) and set(train) | set(test) == set(whole)  # every question once
    assert not set(train.values()) & set(test.values())  # no article on both sides
    assert set(train.values()) | set(test.values()) == set(whole.values())
    n_titles = len(set(whole.values()))
    assert [p["n_titles"] for p in parts] == [round(n_titles * 0.5), n_titles - round(n_titles * 0.5)]
    assert [p["n_examples"] for p in parts] == [len(train), len(test)]
    # the rows are copies: same question, context, answers and answerability
    with open_catalog(ws, read_only_ok=True) as con:
        differing = con.execute(
            """SELECT count(*) FROM examples p JOIN examples w ON w.dataset = 'sq2' AND w.example_id = p.example_id
               WHERE p.dataset IN ('sq2-train', 'sq2-test') AND (p.text, p.text_pair, p.answers, p.is_impossible)
                     IS DISTINCT FROM (w.text, w.text_pair, w.answers, w.is_impossible)"""
        ).fetchone()[0]  # type: ignore[index]
        meta = dict(
            con.execute("SELECT name, version || '/' || parent FROM datasets WHERE parent = 'sq2'").fetchall()
        )
    assert differing == 0 and meta == {"sq2-train": "v2.0/sq2", "sq2-test": "v2.0/sq2"}
    # the same seed again (under other names) gives the same parts; another seed other ones
    again = run_cli(ws, "split", "sq2", "--seed", "7", "--train-name", "a", "--test-name", "b")
    assert again.code == 0, again.stderr
    assert rows(ws, "a") == train and rows(ws, "b") == test
    other = run_cli(ws, "split", "sq2", "--seed", "8", "--train-name", "c", "--test-name", "d")
    assert other.code == 0 and set(rows(ws, "c").values()) != set(train.values())


def test_the_plan_depends_on_the_seed_and_the_fraction_only():
    titles = [f"t{i}" for i in range(35)] * 3  # repeated titles count once
    first, second = plan_title_split(titles, 0.3, seed=1)
    assert (first, second) == plan_title_split(list(reversed(titles)), 0.3, seed=1)
    assert len(first) == round(0.3 * 35) and sorted(first + second) == sorted(set(titles))
    assert plan_title_split(["a", "b"], 0.01, seed=0)[0] and plan_title_split(["a", "b"], 0.99, seed=0)[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("split", "nope"), "no dataset named 'nope'"),
        (("split", "sst2"), "needs a SQuAD-format"),
        (("split", "sq2", "--fraction", "1"), "between 0 and 1"),
        (("split", "sq2", "--fraction", "0"), "between 0 and 1"),
        (("split", "sq2", "--train-name", "sst2"), "'sst2' already exists"),
        (("split", "sq2", "--train-name", "x", "--test-name", "x"), "different names"),
        (("split", "sq2", "--by", "paragraph"), "Invalid value for '--by'"),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(squad2_ws, args, message):
    before = names(squad2_ws)
    # in-process (the same click command a user runs; the successful splits above ran as a user runs them)
    result = CliRunner().invoke(cli, ["--workspace", str(squad2_ws.root), *args], catch_exceptions=False)
    assert result.exit_code == 2 and message in " ".join(result.stderr.split()), result.output
    assert names(squad2_ws) == before
