"""Benchmark: adversarial dynamics and attacks (issue 9) on real SST-2 sentences with the offline MiniLM-L6 model
the project trains by default. Prints, in one run:

1. one adversarial recording pass (engine.training.adversarial.pgd_records, called as the trainer's
   record_adversarial calls it: K ascent steps, the run's batch size, eval mode, weights frozen) as a multiple
   of one training epoch (engine.training.loop.train_one_epoch with inline recording, what a run does) on the
   same examples. No target: the figure says what `--adversarial-dynamics` costs per epoch. A pass is K
   forward + K input-only backward passes + 1 forward per batch; a training step is 1 forward + 1 full backward
   + an AdamW step.
2. the speed-up of perturbation-only gradients (the project's pgd_batch: weights frozen, torch.autograd.grad on
   the perturbation only, eval mode) over the authors' loop (ruizheng20/robust_data, data_statistics.py
   robust_statistics, reimplemented in its shape: model.train(), model.zero_grad() per batch, the word
   embeddings looked up again with gradient every step, loss.backward() into the weights, the step read from
   delta.grad), same K, batch, examples and random starts, timed interleaved in one process:
   target >= 1.4x. Both loops make K updates and one more forward for the record (the authors' loop stops
   after K - 1 updates and back-propagates its recording pass too; here it runs K updates like ours and its
   recording pass has no backward, which favours it). Also shown: the authors' loop in eval mode, which
   isolates the weight gradients from dropout, and the largest difference between its adversarial losses and
   ours (the same attack: it should be ~0).
3. attack throughput (examples/s over all examples, and over the attacked ones: an example the model gets wrong
   is not attacked and costs 1 query) and #Query (mean model queries per attacked example, the paper's Table 3)
   for each method (char-swap, pgd, word-swap), with the attack job's defaults (engine.jobs.attack: max queries
   200, max change 0.3, PGD 8 steps, budget 0.5, similarity 0.8), on SST-2 dev sentences, against a small
   model trained for the purpose through the CLI (`dynascope import`, `dynascope train`). Timed from after
   model and tool loading (WordNet, the sentence encoder and embedding neighbours: shown apart).

Torch runs with one thread (torch.set_num_threads(1), OMP_NUM_THREADS=1 in the children): on shared 2-core
machines two torch threads measured 3-7x slower and erratic. Parts 1-2 run in one fresh child process (their
repeats interleaved, alternating which goes first, so drift and warm-up cancel out); each attack method runs in
its own fresh child process. Best and median of the repeats are shown; ratios as best / best and the median of
the paired repeats.

    .venv/bin/python bench/robust.py [--examples 192] [--max-length 48] [--batch-size 32] [--steps 8]
                                     [--repeat 3] [--attack-examples 32] [--attack-repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("DYNASCOPE_DATA_DIR", REPO.parent / "shared" / "data"))
TRAIN_TSV = DATA / "sst2" / "train.tsv.gz"
DEV_TSV = DATA / "sst2" / "dev.tsv"

TARGET_SPEEDUP = 1.4  # perturbation-only gradients over the authors' loop
METHODS = ("char-swap", "pgd", "word-swap")
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def one_thread() -> Any:
    import torch

    torch.set_num_threads(1)
    return torch


# ---- parts 1 and 2: the adversarial pass, in one child -----------------------------------------------------


def theirs_pgd(model: Any, adapter: Any, batch: Any, start: Any, steps: int, eta: float, train: bool) -> Any:
    """The authors' PGD loop (robust_data's data_statistics.py), reimplemented in its shape: weights requiring
    grad, model.zero_grad(), the word embeddings looked up again (with gradient) every step, loss.backward()
    into the weights, the update read from delta.grad, L2-normalised per example, unbounded. K updates, then the
    recording forward (see the module docstring). Returns the per-example adversarial losses."""
    import torch
    import torch.nn.functional as F

    model.train(train)
    model.zero_grad()
    lookup = model.get_input_embeddings()
    input_ids, labels = batch.tensors["input_ids"], batch.tensors["labels"]
    embedding_init = lookup(input_ids)
    delta = start.detach().clone()
    for _ in range(steps):
        delta.requires_grad_()
        logits = adapter.forward(model, batch, delta + embedding_init)["logits"]
        loss = F.cross_entropy(logits, labels) / steps
        loss.backward()
        delta_grad = delta.grad.clone().detach()
        denorm = torch.norm(delta_grad.view(delta_grad.size(0), -1), dim=1).view(-1, 1, 1).clamp(min=1e-8)
        delta = (delta + eta * delta_grad / denorm).detach()
        embedding_init = lookup(input_ids)
    logits = adapter.forward(model, batch, delta + embedding_init)["logits"]
    return F.cross_entropy(logits, labels, reduction="none").detach()


def child_dynamics(args: argparse.Namespace) -> dict[str, Any]:
    torch = one_thread()
    from engine.importing.sources import ImportOptions, load_source
    from engine.jobs import create_run
    from engine.training.adversarial import PGDSettings, frozen, pgd_batch, pgd_records, random_start
    from engine.training.loop import StopFlag, setup, train_one_epoch
    from engine.training.recorder import EpochRecorder
    from storage.catalog import open_catalog
    from storage.datasets import write_dataset
    from storage.workspace import Workspace

    ws = Workspace(Path(args.work) / "ws-dynamics").create()
    with open_catalog(ws) as con:
        write_dataset(con, load_source(str(TRAIN_TSV), "sst2", ImportOptions()))
    run_id = create_run(
        ws,
        {
            "dataset": "sst2",
            "limit": args.examples,
            "max_length": args.max_length,
            "batch_size": args.batch_size,
            "epochs": args.repeat + 1,
            "adversarial_dynamics": True,
            "adv_steps": args.steps,
            "seed": 1,
        },
    )
    ctx = setup(ws.run_dir(run_id), StopFlag())
    settings = PGDSettings.from_config(ctx.cfg)
    model = ctx.accelerator.unwrap_model(ctx.model)
    indices = list(range(len(ctx.items)))

    def epoch_pass(epoch: int) -> float:
        recorder = EpochRecorder(0, ctx.adapter.extra_columns, [it.example_id for it in ctx.items])
        recorder.reset(epoch)
        start = time.perf_counter()
        train_one_epoch(ctx, epoch, recorder)
        return time.perf_counter() - start

    def adversarial_pass(epoch: int) -> float:
        start = time.perf_counter()
        rows = pgd_records(
            model,
            ctx.adapter,
            ctx.items,
            indices,
            settings,
            seed=ctx.cfg.seed,
            epoch=epoch,
            batch_size=ctx.cfg.batch_size,
            autocast=ctx.accelerator.autocast,
        )
        elapsed = time.perf_counter() - start
        assert rows is not None and len(rows["adv_loss"]) == len(indices)
        return elapsed

    epoch_s, adv_s = [], []
    for r in range(args.repeat):  # alternate which goes first
        for which in ("epoch", "adv") if r % 2 == 0 else ("adv", "epoch"):
            if which == "epoch":
                epoch_s.append(epoch_pass(r))
            else:
                adv_s.append(adversarial_pass(r))

    # part 2: the same batches and random starts for both loops, prepared outside the timing
    hidden = int(model.get_input_embeddings().embedding_dim)
    batches = []
    for i in range(0, len(indices), ctx.cfg.batch_size):
        chunk = indices[i : i + ctx.cfg.batch_size]
        batch = ctx.adapter.collate([ctx.items[j] for j in chunk]).to(ctx.accelerator.device)
        start = random_start(batch, chunk, seed=7, epoch=0, init_norm=settings.init_norm, hidden=hidden)
        batches.append((batch, start))
    tokens = float(sum(b.tensors["attention_mask"].sum() for b, _ in batches)) / len(indices)
    batches = batches[: args.loop_batches]
    loop_examples = sum(b.n_examples for b, _ in batches)

    def ours() -> tuple[float, Any]:
        t0 = time.perf_counter()
        losses = []
        with frozen(model):
            for batch, start in batches:
                losses.append(pgd_batch(model, ctx.adapter, batch, start.clone(), settings).out.losses)
        return time.perf_counter() - t0, torch.cat(losses)

    def authors(train: bool) -> tuple[float, Any]:
        t0 = time.perf_counter()
        losses = [
            theirs_pgd(model, ctx.adapter, b, s, settings.steps, settings.step_size, train)
            for b, s in batches
        ]
        elapsed = time.perf_counter() - t0
        model.zero_grad(set_to_none=True)
        return elapsed, torch.cat(losses)

    loops = {"ours": ours, "theirs": lambda: authors(True), "theirs-eval": lambda: authors(False)}
    names = list(loops)
    times: dict[str, list[float]] = {k: [] for k in names}
    diff, mine, theirs_eval = 0.0, None, None
    for r in range(args.repeat):
        for name in names[r % 3 :] + names[: r % 3]:  # rotate which goes first
            elapsed, losses = loops[name]()
            times[name].append(elapsed)
            if name == "ours":
                mine = losses
            elif name == "theirs-eval":
                theirs_eval = losses
        diff = max(diff, float((mine - theirs_eval).abs().max()))
    return {
        "n": len(ctx.items),
        "batches": -(-len(indices) // ctx.cfg.batch_size),
        "loop_batches": len(batches),
        "loop_examples": loop_examples,
        "mean_tokens": tokens,
        "device": str(ctx.accelerator.device),
        "threads": torch.get_num_threads(),
        "steps": settings.steps,
        "epoch_s": epoch_s,
        "adv_s": adv_s,
        "loops": times,
        "max_loss_diff": diff,
        "mean_adv_loss": float(mine.mean()),
    }


# ---- part 3: one attack method, in its own child -----------------------------------------------------------


def child_attack(args: argparse.Namespace) -> dict[str, Any]:
    one_thread()
    import pyarrow.parquet as pq

    from engine.evaluation import attacks
    from engine.evaluation.scoring import load_run_model, load_tokenizer_for
    from engine.jobs.attack import ATTACK, INPUT, create_attack_run
    from engine.training.config import TrainConfig
    from engine.training.model import build_adapter
    from storage.artifacts import read_config
    from storage.workspace import Workspace

    ws = Workspace(Path(args.work) / "ws-attack")
    method = args.method
    # the attack job's own launcher: its defaults, the dataset exported and labels mapped as the job does
    attack_id = create_attack_run(
        ws, {"run": args.run, "dataset": "sst2-dev", "method": method, "limit": args.attack_examples}
    )
    config = read_config(ws.run_dir(attack_id)) or {}
    t0 = time.perf_counter()
    source_dir = ws.run_dir(args.run)
    cfg = TrainConfig.from_dict(read_config(source_dir) or {})
    model = load_run_model(source_dir, cfg)
    adapter = build_adapter(cfg, load_tokenizer_for(source_dir, cfg))
    load_model_s = time.perf_counter() - t0
    table = pq.ParquetFile(ws.run_dir(attack_id) / "inputs" / INPUT).read()
    examples = [
        attacks.Example(str(i), str(t), None, int(y))
        for i, t, y in zip(
            table.column("example_id").to_pylist(),
            table.column("text").to_pylist(),
            table.column("label").to_pylist(),
        )
    ]
    labels = list(cfg.label_names or [])
    batch_size = int(config.get("batch_size") or cfg.eval_batch_size)
    max_queries = int(config["max_queries"])
    max_change = float(config.get("max_change") or 1.0)
    seed = int(config.get("seed") or 0)
    tools, tools_s = None, 0.0
    if method == "word-swap":
        from engine.evaluation import synonyms

        t0 = time.perf_counter()
        tools = attacks.WordSwapTools(
            wordnet=synonyms.load_wordnet(),
            neighbours=synonyms.EmbeddingNeighbours(model, adapter.tokenizer),  # type: ignore[attr-defined]
            encoder=synonyms.default_sentence_encoder(),
            min_similarity=float(config.get("min_similarity", ATTACK.field("min_similarity").default)),
        )
        tools_s = time.perf_counter() - t0
    pgd = attacks.PGDAttack(steps=int(config.get("steps", 8)), budget=float(config.get("budget") or 0.5))
    chunk = 8  # the job's PART_SIZE: pgd attacks this many examples per batch

    def attack_all() -> tuple[float, list[dict[str, Any]]]:
        victim = attacks.Victim(model, adapter, batch_size)
        start = time.perf_counter()
        rows: list[dict[str, Any]] = []
        for i in range(0, len(examples), chunk):
            part = examples[i : i + chunk]
            if method == "pgd":
                rows += attacks.pgd(model, adapter, part, labels, pgd)
            elif method == "word-swap":
                rows += [
                    attacks.word_swap(
                        victim, ex, labels, tools, max_queries=max_queries, max_change=max_change
                    )
                    for ex in part
                ]
            else:
                rows += [
                    attacks.char_swap(
                        victim, ex, labels, max_queries=max_queries, seed=seed, max_change=max_change
                    )
                    for ex in part
                ]
        return time.perf_counter() - start, rows

    seconds, summaries = [], []
    for _ in range(args.attack_repeat):
        elapsed, rows = attack_all()
        seconds.append(elapsed)
        summaries.append(attacks.summarise({k: [r[k] for r in rows] for k in rows[0]}))
    assert all(s == summaries[0] for s in summaries), "the attack is seeded: repeats must agree"
    queries = sum(r["queries"] for r in rows)
    return {
        "seconds": seconds,
        "summary": summaries[0],
        "total_queries": queries,
        "load_model_s": load_model_s,
        "tools_s": tools_s,
        "wordnet": bool(tools and tools.wordnet is not None),
        "batch_size": batch_size,
        "max_queries": max_queries,
    }


# ---- the parent --------------------------------------------------------------------------------------------


def run_child(args: argparse.Namespace, part: str, *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", part, "--work", args.work]
    cmd += [
        "--examples",
        str(args.examples),
        "--max-length",
        str(args.max_length),
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--loop-batches",
        str(args.loop_batches),
        "--repeat",
        str(args.repeat),
        "--attack-examples",
        str(args.attack_examples),
        "--attack-repeat",
        str(args.attack_repeat),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **THREADS}, cwd=REPO)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"child {part} failed ({proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def cli(ws: Path, *argv: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "tui_app", "--workspace", str(ws), *argv, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **THREADS},
        cwd=REPO,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"dynascope {' '.join(argv)} failed ({proc.returncode})")
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def stats(values: list[float]) -> str:
    return f"best {min(values):7.2f} s  median {statistics.median(values):7.2f} s"


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=128, help="SST-2 training sentences, part 1")
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="PGD ascent steps K (the paper's Table 4: 8)")
    parser.add_argument(
        "--loop-batches", type=int, default=2, help="part 2: the first N batches of part 1's examples"
    )
    parser.add_argument("--repeat", type=int, default=3, help="repeats of parts 1-2")
    parser.add_argument("--attack-examples", type=int, default=32, help="SST-2 dev sentences per attack")
    parser.add_argument("--attack-repeat", type=int, default=2)
    parser.add_argument(
        "--attack-train", type=int, default=256, help="training sentences of the attacked model"
    )
    parser.add_argument("--attack-epochs", type=int, default=2)
    parser.add_argument("--child", choices=("dynamics", "attack"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "dynamics":
        print(json.dumps(child_dynamics(args)))
        return
    if args.child == "attack":
        print(json.dumps(child_attack(args)))
        return

    began = time.perf_counter()
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; torch with 1 thread "
        "(torch.set_num_threads(1), OMP_NUM_THREADS=1: 2 threads measured 3-7x slower and erratic on these "
        "shared cores)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="dynascope-bench-robust-") as tmp:
        args.work = tmp
        d = run_child(args, "dynamics")
        tok = f", {d['mean_tokens']:.1f} tokens on average"
        print(
            f"SST-2 train, {d['n']} sentences (max length {args.max_length}{tok}), batch {args.batch_size} "
            f"({d['batches']} batches), MiniLM-L6, {d['device']}, torch threads {d['threads']}, K {d['steps']}, "
            f"{args.repeat} repeats",
            flush=True,
        )
        epoch, adv = d["epoch_s"], d["adv_s"]
        paired = statistics.median(a / e for a, e in zip(adv, epoch))
        print("1. adversarial recording pass against one training epoch, same examples:", flush=True)
        print(f"  training epoch (train_one_epoch, inline recording)         {stats(epoch)}", flush=True)
        print(
            f"  adversarial pass (pgd_records, K {d['steps']}, eval, weights frozen) {stats(adv)}", flush=True
        )
        print(
            f"  one adversarial pass = {min(adv) / min(epoch):.2f} training epochs (best / best; median of paired "
            f"repeats {paired:.2f}); {d['n'] / min(adv):.1f} examples/s attacked vs {d['n'] / min(epoch):.1f} "
            "trained",
            flush=True,
        )

        loops = d["loops"]
        print(
            f"2. PGD, K {d['steps']} updates + 1 recording forward per batch, the first {d['loop_batches']} "
            f"batches of part 1 ({d['loop_examples']} sentences), same random starts, interleaved:",
            flush=True,
        )
        print(
            f"  ours: perturbation-only gradients (eval, weights frozen)  {stats(loops['ours'])}", flush=True
        )
        print(
            f"  authors' loop: backward into the weights (train mode)     {stats(loops['theirs'])}",
            flush=True,
        )
        print(
            f"  authors' loop in eval mode (weight gradients only)        {stats(loops['theirs-eval'])}",
            flush=True,
        )
        speedup = min(loops["theirs"]) / min(loops["ours"])
        paired = statistics.median(t / o for t, o in zip(loops["theirs"], loops["ours"]))
        eval_speedup = min(loops["theirs-eval"]) / min(loops["ours"])
        eval_paired = statistics.median(t / o for t, o in zip(loops["theirs-eval"], loops["ours"]))
        print(
            f"  speed-up over the authors' loop: {speedup:.2f}x (best / best; median of paired repeats "
            f"{paired:.2f}x)  target >= {TARGET_SPEEDUP:g}x: {verdict(speedup >= TARGET_SPEEDUP)}",
            flush=True,
        )
        print(
            f"  over the same loop in eval mode (weight gradients alone): {eval_speedup:.2f}x (paired "
            f"{eval_paired:.2f}x); largest |adv loss ours - theirs in eval mode| {d['max_loss_diff']:.2e} "
            f"(mean adv loss {d['mean_adv_loss']:.3f})",
            flush=True,
        )

        # 3. attacks against a small model trained through the CLI
        ws = Path(tmp) / "ws-attack"
        t0 = time.perf_counter()
        cli(ws, "import", str(TRAIN_TSV), "--name", "sst2")
        cli(ws, "import", str(DEV_TSV), "--name", "sst2-dev")
        trained = cli(
            ws,
            "train",
            "sst2",
            "--limit",
            str(args.attack_train),
            "--epochs",
            str(args.attack_epochs),
            "--max-length",
            "32",
            "--batch-size",
            "16",
            "--lr",
            "1e-4",
        )
        run_id = trained["run_id"]
        print(
            f"3. attacks on {args.attack_examples} SST-2 dev sentences against run {run_id} (dynascope train "
            f"--limit {args.attack_train} --epochs {args.attack_epochs} --max-length 32 --lr 1e-4, imported and "
            f"trained in {time.perf_counter() - t0:.0f} s); the job's defaults, {args.attack_repeat} repeats each:",
            flush=True,
        )
        for method in METHODS:
            a = run_child(args, "attack", "--method", method, "--run", run_id)
            s = a["summary"]
            best = min(a["seconds"])
            extra = (
                f"; tools {a['tools_s']:.1f} s ({'WordNet + ' if a['wordnet'] else 'no WordNet, '}"
                "embedding neighbours + sentence encoder)"
                if method == "word-swap"
                else ""
            )
            print(
                f"  {method:<9} {stats(a['seconds'])}  {s['n_examples'] / best:6.2f} examples/s, "
                f"{s['n_attacked'] / best:6.2f} attacked/s, #Query {s['avg_queries'] or 0:6.1f} per attacked "
                f"example ({a['total_queries'] / best:5.0f} queries/s); Clean {100 * s['clean_accuracy']:.0f}%, "
                f"Aua {100 * s['aua']:.0f}%, success {100 * (s['success_rate'] or 0):.0f}% of "
                f"{s['n_attacked']} attacked{extra}",
                flush=True,
            )
        print(
            f"total {time.perf_counter() - began:.0f} s; load average at the end {os.getloadavg()[0]:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
