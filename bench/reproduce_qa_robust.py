"""Seed 001 (Towards Robust Extractive QA Models) at CPU scale, through the real CLI (a benchmark, not a test).

SQuAD 2.0 train is not available here, so the v2.0 dev set is split by article: training and evaluation never
share an article. Every step is a `dynascope --workspace WS ...` process, as a user would type it:

1. `import` the v2.0 dev set (`v2`) and AddOneSent (`addonesent`, Jia & Liang's official sample);
2. `split v2 --by title` into `v2-train` / `v2-test`, then `split v2-test` again so the held-out evaluation part
   (`v2-heldout`) is CPU-sized (its share set by --heldout-fraction); `extra-answers v2-train` gives
   `v2-train-extra` (a rule-based synthetic second answer in 30% of the answerable questions);
3. three runs at the same budget (the first N questions, the same ones in each): the default objective (`cls`,
   the [CLS] convention), the seed's (`uniform-null` with the sequence-tagging loss), and the seed's on the
   extra-answer copy;
4. for each run: `eval RUN v2-heldout addonesent` (HasAns / NoAns / overall on the held-out articles; AddOneSent
   averaged over its questions and as the worst case per original), and `attack RUN v2-heldout --method
   negation|entity-rename --limit M` (EM / F1 before and under attack, and the drop).

Prints the figures in the shape of the seed's tables with the run ids, then each step's wall time. Whatever comes
out is printed; nothing is checked against a target. At the default size this takes about an hour on one CPU
thread; the tiny check (`--examples 60 --epochs 1 --heldout-fraction 0.02 --attack-limit 16
--addonesent-articles 1`) about ten minutes.

    .venv/bin/python bench/reproduce_qa_robust.py [--examples 1000] [--epochs 2] [--max-length 192]
        [--heldout-fraction 0.1] [--attack-limit 200] [--addonesent-articles A] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from reproduce_common import DATA, Runner

ATTACKS = ("negation", "entity-rename")


def cell(value: float | None) -> str:
    return f"{value:6.1f}" if isinstance(value, (int, float)) else "     -"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--examples", type=int, default=1000, help="training questions (the first N of v2-train)"
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=192, help="tokens per window")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--heldout-fraction", type=float, default=0.1, help="share of the test part's articles evaluated"
    )
    parser.add_argument("--attack-limit", type=int, default=200, help="attack the first M held-out questions")
    parser.add_argument(
        "--addonesent-articles",
        type=int,
        default=0,
        help="evaluate AddOneSent's first A articles only, originals with their variants (0: all 48)",
    )
    parser.add_argument(
        "--extra-fraction", type=float, default=0.3, help="answerable questions given a 2nd span"
    )
    parser.add_argument("--seed", type=int, default=0, help="the article split's seed")
    parser.add_argument("--workspace", type=Path, help="default: a new temporary folder")
    args = parser.parse_args()
    ws = args.workspace or Path(tempfile.mkdtemp(prefix="dynascope-qa-robust-")) / "ws"
    run = Runner(ws)
    t_start = time.monotonic()
    print(
        f"SQuAD 2.0 dev split by article (seed {args.seed}): {args.examples} training questions, {args.epochs} "
        f"epochs, max length {args.max_length}; held-out share {args.heldout_fraction:g} of the test articles; "
        f"attacks on the first {args.attack_limit} held-out questions; workspace {ws}",
        flush=True,
    )

    have = {d["name"] for d in run("datasets", "datasets", "--json")} if ws.exists() else set()
    if "v2" not in have:
        run("import", "import", str(DATA / "squad_v2.0" / "dev-v2.0-reconstructed.json.gz"), "--name", "v2")
    if "addonesent" not in have:
        source = DATA / "adversarial_squad" / "sample1k-HCVerifySample.json.gz"
        if (
            args.addonesent_articles
        ):  # a CPU-sized sample, written beside the workspace (never in the repository)
            with gzip.open(source, "rt", encoding="utf-8") as fh:
                full = json.load(fh)
            source = ws.parent / "addonesent-sample.json"
            source.write_text(json.dumps({**full, "data": full["data"][: args.addonesent_articles]}))
        run("import", "import", str(source), "--name", "addonesent")
    if "v2-train" not in have:
        run("split", "split", "v2", "--by", "title", "--seed", str(args.seed), "--json")
    if "v2-heldout" not in have:
        run(
            "split",
            "split",
            "v2-test",
            *("--fraction", str(args.heldout_fraction), "--seed", str(args.seed)),
            *("--train-name", "v2-heldout", "--test-name", "v2-rest", "--json"),
        )
    if "v2-train-extra" not in have:
        extra = run(
            "extra-answers",
            "extra-answers",
            "v2-train",
            *("--fraction", str(args.extra_fraction), "--seed", str(args.seed), "--json"),
        )
        print(
            f"  extra answers: {extra['n_added']} questions changed, skipped {extra['skipped']}", flush=True
        )

    size = (
        *("--limit", str(args.examples), "--epochs", str(args.epochs)),
        *("--max-length", str(args.max_length), "--batch-size", str(args.batch_size)),
    )
    settings = {
        "default ([CLS])": ("v2-train", ("--qa-objective", "cls")),
        "seed 001 loss": ("v2-train", ("--qa-objective", "uniform-null")),
        "seed 001 loss + extra answers": ("v2-train-extra", ("--qa-objective", "uniform-null")),
    }
    runs = {
        label: run("train", "train", dataset, *size, *objective, "--json")["run_id"]
        for label, (dataset, objective) in settings.items()
    }
    scores: dict[str, dict[str, Any]] = {}
    attacks: dict[tuple[str, str], dict[str, Any]] = {}
    for label, run_id in runs.items():
        scored = run("eval", "eval", run_id, "v2-heldout", "addonesent", "--json")
        scores[label] = {item["eval_set"]: item["metrics"] for item in scored}
        for method in ATTACKS:
            attacks[label, method] = run(
                f"attack {method}",
                "attack",
                run_id,
                "v2-heldout",
                *("--method", method, "--limit", str(args.attack_limit), "--json"),
            )["attack"]
    total = time.monotonic() - t_start

    print("\nIn-domain (held-out v2.0 articles), F1 / EM:")
    print(f"{'':<32}{'HasAns F1':>10}{'NoAns F1':>10}{'overall F1':>11}{'overall EM':>11}   run")
    for label, run_id in runs.items():
        m = scores[label]["v2-heldout"]
        print(
            f"{label:<32}{cell(m.get('HasAns_f1')):>10}{cell(m.get('NoAns_f1')):>10}{cell(m.get('f1')):>11}"
            f"{cell(m.get('exact')):>11}   {run_id}"
        )
    print("\nAdversarial, F1 (AddOneSent: average over its questions and worst case per original):")
    head = "".join(f"{m + ' F1 (drop)':>24}" for m in ATTACKS)
    print(f"{'':<32}{'AddOneSent':>11}{'worst':>8}{head}")
    for label in runs:
        m = scores[label]["addonesent"]
        cells = ""
        for method in ATTACKS:
            a = attacks[label, method]
            clean, under = a.get("clean_f1"), a.get("f1")
            drop = (
                clean - under if isinstance(clean, (int, float)) and isinstance(under, (int, float)) else None
            )
            cells += f"{cell(under):>16} ({cell(drop).strip():>5})"
        print(f"{label:<32}{cell(m.get('f1')):>11}{cell(m.get('worst_f1')):>8}{cells}")
    print("\nattacked questions (unattackable ones are counted, not scored):")
    for method in ATTACKS:
        a = attacks[next(iter(runs)), method]
        print(
            f"  {method:<14}{a['n_examples']} considered, {a.get('n_unattackable', 0)} of them could not be attacked"
        )
    print("\nruns:")
    for label, run_id in runs.items():
        print(f"  {label:<32}{run_id}")
    run.print_timings(total, 22)


if __name__ == "__main__":
    main()
