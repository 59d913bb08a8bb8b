"""Seed 004 (synthetic QA data from an LLM, blended with real data) at CPU scale, through the real CLI (a benchmark,
not a test).

A QA run trained on real SQuAD questions only is compared with one trained on a 50/50 blend of real and generated
questions of the same total size. Every step is a `dynascope --workspace WS ...` process, as a user would type it:

1. `llm serve` (the offline SmolLM2-135M server, a child process of this script, stopped at the end);
2. `import` the first N questions of SQuAD train (`squad-train`; the v1.1 train file is not available here, its
   v1.0 reconstruction is), the first D questions of SQuAD v1.1 dev (`squad-dev`), AddOneSent (`addonesent`, Jia &
   Liang's official sample) and every `--eval-file` given; the CPU-sized samples are written beside the workspace,
   never in the repository;
3. `train squad-train` (the real-only run);
4. seed 004's chain: `generate --pipeline context` (a new paragraph written for each of C sampled training
   questions) -> `qa-from-context` (question + answer pairs from each paragraph, an answer kept only as an exact
   substring) -> `round-trip` (a pair kept only when the real-only run recovers its answer) -> `blend` (real and
   kept generated pairs 50/50 at the real-only run's training size, or at twice the kept pairs when fewer were
   kept; then a second real-only run is trained at that smaller size, so the two compared runs always match);
5. `train` the blend at the same budget, then `eval RUN squad-dev addonesent [extra sets]` for each run.

Prints EM / F1 per evaluation set (AddOneSent averaged over its questions and as the worst case per original) with
the run ids, the generation counts, then each step's wall time. Whatever comes out is printed; nothing is checked
against a target.

    .venv/bin/python bench/reproduce_generation.py [--examples 500] [--contexts C] [--words 120] [--pairs 2]
        [--threshold 0.5] [--epochs 2] [--max-length 192] [--dev-questions 1000] [--addonesent-articles A]
        [--eval-file PATH ...] [--port P] [--workspace DIR]

The tiny check (`--examples 8 --contexts 8 --words 40 --epochs 1 --max-length 128 --dev-questions 20
--addonesent-articles 1 --threshold 0`) took 2.5 minutes on the shared 2-core machine under load, a third of it the
two evaluations (AddOneSent's first article is 166 questions); at such a size the figures are noise.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from reproduce_common import DATA, ENV, REPO, Runner, dynascope

TRAIN_FILE = DATA / "squad_v1.0_train" / "train-v1.0-explorer-reconstructed.json.gz"
DEV_FILE = DATA / "squad_v1.1" / "dev-v1.1.json.gz"
ADDONESENT_FILE = DATA / "adversarial_squad" / "sample1k-HCVerifySample.json.gz"
MODEL = "smollm2"  # the name `dynascope llm serve` answers to


def start_server(port: int | None, log: Path) -> tuple[subprocess.Popen[str], str]:
    """`dynascope llm serve` as a child process; its one stdout line is the base URL (its log goes to a file)."""
    command = [*dynascope(), "llm", "serve", *(("--port", str(port)) if port else ())]
    print("$ dynascope " + " ".join(command[len(dynascope()) :]), flush=True)
    with log.open("w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=ENV, cwd=REPO)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.wait(timeout=10)
        sys.exit(f"`dynascope llm serve` exited ({proc.returncode}) without a URL; its log: {log}")
    return proc, url


def stop_server(proc: subprocess.Popen[str]) -> None:
    """SIGTERM stops the llama.cpp server it runs too; a kill only if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_squad(path: Path) -> dict[str, Any]:
    with (
        gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8") as fh
    ):
        data: dict[str, Any] = json.load(fh)
    return data


def first_questions(squad: dict[str, Any], n: int) -> dict[str, Any]:
    """The first n questions of a SQuAD file, articles and paragraphs kept in order (the last one cut short)."""
    articles: list[dict[str, Any]] = []
    left = n
    for article in squad["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            if left <= 0:
                break
            qas = paragraph["qas"][:left]
            left -= len(qas)
            paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            articles.append({**article, "paragraphs": paragraphs})
        if left <= 0:
            break
    return {**squad, "data": articles}


def write_sample(squad: dict[str, Any], path: Path) -> str:
    path.write_text(json.dumps(squad))
    return str(path)


def dataset_name(path: Path, taken: set[str]) -> str:
    """The file's name as a dataset name (the same on a rerun in a reused workspace), unlike every name taken."""
    stem = path.name.split(".")[0]
    name = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "eval"
    while name in taken:
        name += "-x"
    return name


def cell(value: float | None) -> str:
    return f"{value:6.1f}" if isinstance(value, (int, float)) else "     -"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=500, help="real training questions (the first N)")
    parser.add_argument(
        "--contexts", type=int, default=0, help="training questions given a generated paragraph (0: all N)"
    )
    parser.add_argument("--words", type=int, default=120, help="at most this many words per paragraph")
    parser.add_argument("--pairs", type=int, default=2, help="question + answer pairs asked per paragraph")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="round-trip: the least F1 to keep a pair"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=192, help="tokens per window")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--dev-questions", type=int, default=1000, help="evaluate SQuAD v1.1 dev's first D questions"
    )
    parser.add_argument(
        "--addonesent-articles",
        type=int,
        default=0,
        help="evaluate AddOneSent's first A articles only, originals with their variants (0: all 48)",
    )
    parser.add_argument(
        "--eval-file", type=Path, action="append", default=[], help="another SQuAD-format set (repeatable)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="sampling of the questions, the LLM and the blend"
    )
    parser.add_argument("--port", type=int, help="the LLM server's port (default: a free one)")
    parser.add_argument("--workspace", type=Path, help="default: a new temporary folder")
    args = parser.parse_args()
    for path in args.eval_file:
        if not path.is_file():
            sys.exit(f"--eval-file {path}: no such file (a SQuAD-format JSON file, optionally .gz)")
    ws = args.workspace or Path(tempfile.mkdtemp(prefix="dynascope-generation-")) / "ws"
    ws.parent.mkdir(parents=True, exist_ok=True)
    run = Runner(ws)
    n_contexts = args.contexts or args.examples
    t_start = time.monotonic()
    print(
        f"{args.examples} real SQuAD training questions, {n_contexts} given a generated paragraph of at most "
        f"{args.words} words, {args.pairs} pairs each, round-trip threshold {args.threshold:g}; {args.epochs} "
        f"epochs, max length {args.max_length}; SQuAD v1.1 dev's first {args.dev_questions} questions; "
        f"workspace {ws}",
        flush=True,
    )

    have = {d["name"] for d in run("datasets", "datasets", "--json")} if ws.exists() else set()
    if "squad-train" not in have:
        sample = first_questions(read_squad(TRAIN_FILE), args.examples)
        run(
            "import", "import", write_sample(sample, ws.parent / "train-sample.json"), "--name", "squad-train"
        )
    if "squad-dev" not in have:
        dev = first_questions(read_squad(DEV_FILE), args.dev_questions)
        run("import", "import", write_sample(dev, ws.parent / "dev-sample.json"), "--name", "squad-dev")
    if "addonesent" not in have:
        source = str(ADDONESENT_FILE)
        if args.addonesent_articles:
            full = read_squad(ADDONESENT_FILE)
            sample = {**full, "data": full["data"][: args.addonesent_articles]}
            source = write_sample(sample, ws.parent / "addonesent-sample.json")
        run("import", "import", source, "--name", "addonesent")
    eval_sets = ["squad-dev", "addonesent"]
    taken = {"squad-train", *eval_sets}
    for path in args.eval_file:
        name = dataset_name(path, taken)
        taken.add(name)
        if name not in have:
            run("import", "import", str(path.resolve()), "--name", name)
        eval_sets.append(name)
    n_real = next(
        d["n_examples"] for d in run("datasets", "datasets", "--json") if d["name"] == "squad-train"
    )

    budget = (
        *("--epochs", str(args.epochs), "--max-length", str(args.max_length)),
        *("--batch-size", str(args.batch_size), "--seed", str(args.seed)),
    )
    runs: dict[str, str] = {}
    runs["real only"] = run("train", "train", "squad-train", *budget, "--json")["run_id"]

    llm = (
        *("--model", MODEL, "--json-mode", "json_object_schema", "--concurrency", str(args.concurrency)),
        *("--seed", str(args.seed)),
    )
    # the names carry the checker run's random tail: a reused --workspace gets a fresh chain (the LLM cache
    # answers the repeated requests)
    suffix = f"s{args.seed}-{runs['real only'].rsplit('-', 1)[-1]}"
    ctx, qa, checked, blend = (f"{step}-{suffix}" for step in ("ctx", "qa", "qa-rt", "blend"))
    t0 = time.monotonic()
    server, url = start_server(args.port, ws.parent / "llm-server.log")
    run.timings.append(("llm serve (start)", time.monotonic() - t0))
    print(f"  LLM server at {url}", flush=True)
    generated: dict[str, dict[str, Any]] = {}
    try:
        t0 = time.monotonic()
        generated["context"] = run(
            "generate context",
            *("generate", "--pipeline", "context", "--from", "squad-train", "--name", ctx),
            *("--n", str(n_contexts), "--words", str(args.words), "--base-url", url, *llm, "--json"),
        )["generated"]
        generated["qa-from-context"] = run(
            "generate qa-from-context",
            *("generate", "--pipeline", "qa-from-context", "--from", ctx, "--name", qa),
            *("--n", str(generated["context"]["accepted"]), "--pairs", str(args.pairs)),
            *("--base-url", url, *llm, "--json"),
        )["generated"]
        llm_seconds = time.monotonic() - t0
    finally:
        stop_server(server)
    if not generated["qa-from-context"]["accepted"]:
        sys.exit("qa-from-context kept no pair: nothing to check or blend (try more --contexts or --words)")
    generated["round-trip"] = run(
        "generate round-trip",
        *("generate", "--pipeline", "round-trip", "--from", qa, "--run", runs["real only"]),
        *("--threshold", str(args.threshold), "--name", checked, "--json"),
    )["generated"]
    kept = generated["round-trip"]["accepted"]
    if not kept:
        sys.exit("round-trip kept no pair: nothing to blend (try a lower --threshold)")
    total = min(n_real, 2 * kept)
    generated["blend"] = run(
        "generate blend",
        *("generate", "--pipeline", "blend", "--from", "squad-train", "--generated", checked),
        *(
            "--n",
            str(total),
            "--ratio",
            "0.5",
            "--seed",
            str(args.seed),
            "--name",
            blend,
            "--json",
        ),
    )["generated"]
    if total < n_real:  # too few kept pairs for the full size: the real-only side is trained at the same size
        print(f"  only {kept} generated pairs kept: both sides compared at {total} questions", flush=True)
        runs[f"real only ({total})"] = run(
            "train", "train", "squad-train", "--limit", str(total), *budget, "--json"
        )["run_id"]
    runs["50/50 real + generated"] = run("train", "train", blend, *budget, "--json")["run_id"]

    scores: dict[str, dict[str, Any]] = {}
    for label, run_id in runs.items():
        scored = run("eval", "eval", run_id, *eval_sets, "--json")
        scored = scored if isinstance(scored, list) else [scored]
        scores[label] = {item["eval_set"]: item["metrics"] for item in scored}
    elapsed = time.monotonic() - t_start

    print("\nGeneration (seed 004's chain on the real training questions):")
    for step, summary in generated.items():
        rejected = ", ".join(f"{k} {v}" for k, v in (summary.get("rejected") or {}).items()) or "none"
        print(
            f"  {step:<17}{summary.get('accepted', 0):>6} accepted from {summary.get('sources', '?')} source "
            f"examples; rejected: {rejected}"
        )
    print(f"  LLM wall time (context + qa-from-context): {llm_seconds:.1f} s")

    sizes = {"real only": n_real, "50/50 real + generated": total, f"real only ({total})": total}
    print("\nEM / F1 (AddOneSent: average over its questions, and worst case per original question):")
    print(f"{'':<26}" + "".join(f"{label[:22]:>24}" for label in runs))
    print(f"{'training questions':<26}" + "".join(f"{sizes.get(label, '?'):>24}" for label in runs))
    print(f"{'':<26}" + f"{'EM':>14}{'F1':>10}" * len(runs))
    rows = [
        (f"{name} ({scores[next(iter(runs))].get(name, {}).get('total', '?')})", name, "")
        for name in eval_sets
    ]
    rows.insert(2, ("addonesent worst case", "addonesent", "worst_"))
    for title, name, prefix in rows:
        cells = "".join(
            f"{cell(scores[label].get(name, {}).get(prefix + 'exact')):>14}"
            f"{cell(scores[label].get(name, {}).get(prefix + 'f1')):>10}"
            for label in runs
        )
        print(f"{title[:25]:<26}{cells}")
    print("\nruns:")
    for label, run_id in runs.items():
        print(f"  {label:<28}{run_id}")
    run.print_timings(elapsed, 26)


if __name__ == "__main__":
    main()
