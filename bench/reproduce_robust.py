"""Zheng et al. (seed 003) Tables 1-3 at CPU scale, through the real CLI (a benchmark, not a test).

Every step is a `dynascope --workspace WS ...` process, as a user would type it:

1. `import` SST-2 train (`sst2`) and dev (`sst2-dev`);
2. `train sst2 --limit N --adversarial-dynamics`: the base run ("100% train"), with the per-example
   adversarial losses (sensitivity) that rank the robust / non-robust examples;
3. `retrain BASE --region robust|non-robust|random --fraction 0.5 --no-adversarial-dynamics`: the paper's
   data selections (Table 1; it has a 50% swing row where we have a seeded 50% random one; `--regions` takes
   swing too), each trained from scratch with the base run's settings;
4. `train sst2 --limit N --mitigation flooding --mitigation-from BASE --mitigation-fraction 0.3`: 100% of
   the data, flooding on the 30% most robust (the paper's appendix for SST-2; its Table 2 uses 50%);
5. for each run, `eval RUN sst2-dev` (Clean%, all 872 dev sentences) and `attack RUN sst2-dev --method
   pgd|word-swap|char-swap --limit M` (Aua%, #Query on the first M dev sentences, the same for every run).

Prints the figures in the shape of the paper's Tables 1 (data selection), 2 (mitigation) and 3 (Clean%, Aua%
and #Query per attack) with the run ids and, for reference, the paper's SST-2 figures (BERT-base on all 67k
sentences, TextFooler, of which word-swap is the closest); then the wall time of every step and the
per-example costs (training, adversarial pass, each attack) to extrapolate a larger size from. Whatever comes
out is printed; no figure is checked against a target. Children run with one torch thread (OMP_NUM_THREADS=1:
on the 2 shared cores of the dev machines two threads were several times slower). `--balanced` makes each
selection label-balanced (on a weak base run the most robust half is nearly one label, see the README).
The default size is estimated at about an hour on one CPU thread (README); the tiny check takes about 5 min.

    .venv/bin/python bench/reproduce_robust.py [--examples 2000] [--epochs 3] [--max-length 64]
        [--attack-limit 200] [--adv-steps 8] [--workspace DIR]
        [--balanced]
    tiny check: --examples 120 --epochs 2 --max-length 32 --attack-limit 16 --adv-steps 2
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from reproduce_common import DATA, Runner

METHODS = ("pgd", "word-swap", "char-swap")
# the paper's SST-2 rows, Clean% and TextFooler Aua% (BERT-base, all of SST-2; Tables 1 and 2, whose
# flooding row floods the 50% most robust); None where it has no such row
PAPER = {
    "100% train": (92.1, 6.1),
    "50% non-robust": (93.1, 4.7),
    "50% swing": (91.6, 17.2),
    "50% robust": (91.1, 23.9),
    "50% random": None,
    "100% + flooding": (91.9, 46.0),
}


def epoch_costs(workspace: Path, run_id: str) -> tuple[float, float, int]:
    """(training seconds, adversarial-pass seconds, example-epochs) summed over the run's epoch_end events."""
    train = adv = 0.0
    n = 0
    for line in (workspace / "runs" / run_id / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "epoch_end":
            m = event["metrics"]
            adv += m.get("adv_seconds", 0.0)
            train += m["seconds"] - m.get("adv_seconds", 0.0)
            n += m["examples"]
    return train, adv, n


def pct(x: float | None) -> str:
    return "  -  " if x is None else f"{100 * x:5.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="SST-2 training sentences (the first N)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=64, help="tokens per sentence (SST-2's are short)")
    parser.add_argument("--attack-limit", type=int, default=200, help="attack the first M dev sentences")
    parser.add_argument("--adv-steps", type=int, default=8, help="PGD steps K of the adversarial dynamics")
    parser.add_argument(
        "--max-queries", type=int, default=200, help="per attacked example (the CLI's default)"
    )
    parser.add_argument("--regions", default="robust,non-robust,random", help="50%% selections to retrain on")
    parser.add_argument(
        "--flood-fraction", type=float, default=0.3, help="share flooded (paper's appendix: 0.3)"
    )
    parser.add_argument("--fraction", type=float, default=0.5, help="share of each selection (paper: 0.5)")
    parser.add_argument(
        "--balanced", action="store_true", help="label-balanced selections (retrain --balanced)"
    )
    parser.add_argument("--workspace", type=Path, help="default: a new temporary folder")
    args = parser.parse_args()
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    ws = args.workspace or Path(tempfile.mkdtemp(prefix="dynascope-robust-")) / "ws"
    run = Runner(ws)
    t_start = time.monotonic()
    print(
        f"SST-2: {args.examples} training sentences, {args.epochs} epochs, max length {args.max_length}, "
        f"adversarial dynamics K {args.adv_steps}; attacks on the first {args.attack_limit} dev sentences "
        f"(at most {args.max_queries} queries each); workspace {ws}",
        flush=True,
    )

    have = {d["name"] for d in run("import", "datasets", "--json")} if ws.exists() else set()
    if "sst2" not in have:
        run("import", "import", str(DATA / "sst2" / "train.tsv.gz"), "--name", "sst2", "--json")
    if "sst2-dev" not in have:
        run("import", "import", str(DATA / "sst2" / "dev.tsv"), "--name", "sst2-dev", "--json")

    size = ("--limit", str(args.examples), "--epochs", str(args.epochs), "--max-length", str(args.max_length))
    adversarial = ("--adversarial-dynamics", "--adv-steps", str(args.adv_steps))
    base = run("train base", "train", "sst2", *size, *adversarial, "--json")["run_id"]
    runs: dict[str, str] = {"100% train": base}
    for region in regions:
        label = f"{round(100 * args.fraction)}% {region}"
        runs[label] = run(
            "retrain",
            "retrain",
            base,
            *("--region", region, "--fraction", str(args.fraction), "--no-adversarial-dynamics", "--json"),
            *(("--balanced",) if args.balanced else ()),
        )["run_id"]
    flood = f"100% + flooding ({round(100 * args.flood_fraction)}% most robust)"
    runs[flood] = run(
        "train flooding",
        "train",
        "sst2",
        *size,
        *(
            "--mitigation",
            "flooding",
            "--mitigation-from",
            base,
            "--mitigation-fraction",
            str(args.flood_fraction),
        ),
        "--json",
    )["run_id"]

    clean: dict[str, float] = {}
    n_dev = 0
    attacks: dict[tuple[str, str], dict[str, Any]] = {}
    for label, run_id in runs.items():
        scored = run("eval", "eval", run_id, "sst2-dev", "--json")
        clean[label], n_dev = scored["metrics"]["accuracy"], scored["n_examples"]
        for method in METHODS:
            attacks[label, method] = run(
                f"attack {method}",
                "attack",
                run_id,
                "sst2-dev",
                *("--method", method, "--limit", str(args.attack_limit)),
                *("--max-queries", str(args.max_queries), "--json"),
            )["attack"]
    total = time.monotonic() - t_start

    def aua(label: str) -> str:
        return "  ".join(f"{pct(attacks[label, m]['aua']):>9}" for m in METHODS)

    def paper(label: str) -> str:
        ref = PAPER.get(re.sub(r" \(.*\)$", "", label))
        return f"{ref[0]:5.1f} / {ref[1]:4.1f}" if ref else "-"

    head = f"{'':<38}{'Clean%':>7}  " + "  ".join(f"{m + ' Aua%':>9}" for m in METHODS)
    print(f"\nClean% on all {n_dev} dev sentences; Aua% on the first {args.attack_limit}")
    print("paper: BERT-base on all of SST-2, Clean% / TextFooler Aua% (its Tables 1-2)")
    print("\nTable 1 shape: data selection (train from scratch on a share of the base run's examples)")
    print(f"{head}  {'paper':>13}  run")
    for label in ["100% train"] + [lb for lb in runs if lb != "100% train" and lb != flood]:
        print(f"{label:<38}{pct(clean[label]):>7}  {aua(label)}  {paper(label):>13}  {runs[label]}")
    print("\nTable 2 shape: mitigating overfitting to the most robust examples")
    print(f"{head}  {'paper':>13}  run")
    for label in ("100% train", flood):
        shown = "standard training" if label == "100% train" else "+ flooding"
        print(f"{shown:<38}{pct(clean[label]):>7}  {aua(label)}  {paper(label):>13}  {runs[label]}")
    print(
        f"\nTable 3 shape: Clean% (all dev; on the {args.attack_limit} attacked), Aua% and #Query per attack"
    )
    print(f"{'':<38}{'Clean%':>13}  " + "  ".join(f"{m + ' Aua% #Query':>21}" for m in METHODS))
    for label in runs:
        subset = {round(100 * attacks[label, m]["clean_accuracy"], 1) for m in METHODS}
        cells = "  ".join(
            f"{pct(attacks[label, m]['aua']):>11} {attacks[label, m]['avg_queries'] or 0:>9.1f}"
            for m in METHODS
        )
        print(f"{label:<38}{pct(clean[label])} ({'/'.join(f'{s:.1f}' for s in sorted(subset))})  {cells}")
    print("\nruns:")
    for label, run_id in runs.items():
        print(f"  {label:<38}{run_id}")

    run.print_timings(total, 18)
    train_s, adv_s, n = epoch_costs(ws, base)
    print(
        f"  base run: training {1000 * train_s / n:.1f} ms per example-epoch, adversarial pass "
        f"(K {args.adv_steps}) {1000 * adv_s / n:.1f} ms per example-epoch ({adv_s / train_s:.1f}x training)"
    )
    for method in METHODS:
        secs = run.steps()[f"attack {method}"]
        q = sum(attacks[lb, method]["avg_queries"] or 0 for lb in runs) / len(runs)
        print(
            f"  attack {method:<10} {sum(secs) / len(secs) / args.attack_limit:.3f} s per dev sentence "
            f"(process start included), {q:.1f} queries per attacked sentence"
        )


if __name__ == "__main__":
    main()
