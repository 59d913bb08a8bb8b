"""Training with per-example dynamics recording, on Hugging Face Accelerate (one process, or one per rank).

The job body of one rank: read the run's config and exported inputs (never the catalog), train for the configured
epochs, record one dynamics row per example per epoch (with adversarial dynamics, a PGD pass over the epoch's
examples adds their adversarial records to the same rows: `record_adversarial`), checkpoint each complete epoch, and
finally save the model and hand it to the caller (the job scores the evaluation sets). `engine.jobs.rank` is the module torchrun
starts on every rank:

    torchrun --standalone --nproc_per_node 2 -m engine.jobs.rank runs/<run_id>

Determinism (so a resumed run equals an uninterrupted one): the shuffle of epoch e is a permutation drawn from
a generator seeded with (seed, e), not from a running RNG; torch / numpy / python RNG states (dropout) are saved
in the checkpoint of each complete epoch with the model, optimizer and scheduler; deterministic algorithms are on.
The adversarial pass draws its random starts from generators seeded with (seed, epoch, example index) and runs in
eval mode, so it neither depends on nor disturbs those states.
"""

from __future__ import annotations

import functools
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from engine.tasks import Batch, ForwardOut, TaskAdapter
from engine.training.adversarial import PGDSettings, pgd_records
from engine.training.config import CHECKPOINT, PROGRESS_EVERY_S, TrainConfig
from engine.training.model import build_adapter, evaluate, load_model, load_tokenizer
from engine.training.objectives import Objective, compute, for_run
from engine.training.recorder import EpochRecorder
from engine.training.stop import StopFlag, TrainingDivergedError
from storage.artifacts import append_event, dynamics_dir, read_config
from storage.steplog import append_steps

# ---- the order of an epoch ---------------------------------------------------------------------------


def epoch_order(n: int, seed: int, epoch: int, world: int = 1, rank: int = 0) -> list[tuple[int, bool]]:
    """This rank's (example index, keep) pairs for one epoch, in training order.

    Like torch's DistributedSampler: one permutation seeded by (seed, epoch), padded with repeats from its head so
    every rank gets the same number of examples (the collectives need equal step counts), then dealt out
    round-robin. keep=False marks a padding repeat, which trains but is not recorded.
    """
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    per_rank = math.ceil(n / world)
    extra = per_rank * world - n
    padded = np.concatenate([perm, np.resize(perm, extra)]) if extra else perm
    keep = [True] * n + [False] * extra
    return [(int(padded[i]), keep[i]) for i in range(rank, per_rank * world, world)]


def get_batches(order: list[tuple[int, bool]], batch_size: int) -> list[list[tuple[int, bool]]]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# ---- the training loop ---------------------------------------------------------------------------------


@dataclass
class TrainContext:
    cfg: TrainConfig
    run_dir: Path
    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    adapter: TaskAdapter
    items: list[Any]
    flag: StopFlag
    steps_per_epoch: int
    progress: ProgressReporter | None = None
    diverged: TrainingDivergedError | None = None  # this rank's loss stopped being finite

    @property
    def rank(self) -> int:
        return int(self.accelerator.process_index)

    @property
    def world(self) -> int:
        return int(self.accelerator.num_processes)

    @functools.cached_property
    def objective(self) -> Objective:
        """The run's training loss, a mitigation included (its example ids read once from the run folder)."""
        return for_run(self.cfg, self.run_dir)

    def should_stop(self) -> bool:
        """Every rank must stop at the same step (a lone rank waiting in all-reduce would hang), so with several
        ranks the flag is agreed on with a tiny all-reduce each step. Raises TrainingDivergedError on every rank
        once any rank's loss stopped being finite (agreed in the same all-reduce, with its epoch and step)."""
        if self.world == 1:
            if self.diverged is not None:
                raise self.diverged
            return self.flag.requested
        d = self.diverged
        local = [1.0 if self.flag.requested else 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        if d is not None:
            local[1:] = [1.0, d.value, d.epoch, d.step, d.total]
        agreed = torch.tensor(local, dtype=torch.float64, device=self.accelerator.device)
        stop, bad, value, epoch, step, total = self.accelerator.reduce(agreed, reduction="sum").tolist()
        if bad > 0:  # ranks diverge at the same step (the check runs every step): average what they report
            raise d or TrainingDivergedError(value, int(epoch / bad), int(step / bad), int(total / bad))
        return bool(stop > 0)


def make_optimizer(model: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    params = list(model.named_parameters())
    groups = [
        {
            "params": [p for n, p in params if not any(k in n for k in no_decay)],
            "weight_decay": cfg.weight_decay,
        },
        {"params": [p for n, p in params if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def train_step(ctx: TrainContext, batch: Batch, *, sync: bool, scale: float) -> ForwardOut:
    """Forward and backward of one micro-batch under the run's objective; returns the forward output (its per-unit
    losses and logits feed the recorder)."""
    acc = ctx.accelerator
    # Without no_sync, DDP would all-reduce gradients on every micro-batch of an accumulation group.
    with nullcontext() if sync or ctx.world == 1 else acc.no_sync(ctx.model):
        with acc.autocast():
            out = compute(ctx.adapter, ctx.objective, ctx.model, batch)
        acc.backward(out.losses.mean() * scale)
    return out


def optimizer_step(ctx: TrainContext) -> None:
    if ctx.cfg.max_grad_norm:
        ctx.accelerator.clip_grad_norm_(ctx.model.parameters(), ctx.cfg.max_grad_norm)
    ctx.optimizer.step()
    ctx.scheduler.step()
    ctx.optimizer.zero_grad(set_to_none=True)


def train_one_epoch(ctx: TrainContext, epoch: int, recorder: EpochRecorder | None) -> bool:
    """One epoch over this rank's share; with a recorder, inline dynamics from the step's own logits.
    Returns False when stopped by a signal (the partial epoch is then discarded)."""
    cfg = ctx.cfg
    ctx.model.train()
    batches = get_batches(epoch_order(len(ctx.items), cfg.seed, epoch, ctx.world, ctx.rank), cfg.batch_size)
    accum = max(1, cfg.grad_accum)
    full_groups = len(batches) // accum
    for step, chunk in enumerate(batches):
        if ctx.should_stop():
            return False
        group = step // accum
        size = accum if group < full_groups else len(batches) - full_groups * accum
        boundary = (step + 1) % accum == 0 or step == len(batches) - 1
        batch = ctx.adapter.collate([ctx.items[i] for i, _ in chunk]).to(ctx.accelerator.device)
        out = train_step(ctx, batch, sync=boundary, scale=1.0 / size)
        loss = float(out.losses.detach().mean())
        if not math.isfinite(loss):
            ctx.diverged = TrainingDivergedError(loss, epoch, step + 1, len(batches))
            if ctx.world == 1:
                raise ctx.diverged
            # several ranks: finish this step in lockstep; the next should_stop() raises on every rank
        keep = [k for _, k in chunk]
        rows = ctx.adapter.record(batch, out) if recorder is not None else None
        if recorder is not None and rows is not None:
            recorder.add(rows, keep=keep)
        if boundary:
            optimizer_step(ctx)
        if ctx.progress is not None and ctx.diverged is None:
            lr = float(ctx.scheduler.get_last_lr()[0])
            accuracy = batch_accuracy(rows, keep)
            ctx.progress.step(epoch, step + 1, len(batches), len(chunk) * ctx.world, loss, accuracy, lr)
    return True


def batch_accuracy(rows: dict[str, list[Any]] | None, keep: list[bool]) -> float | None:
    """The share of the batch's recorded examples predicted correctly (sampler repeats left out); None when the
    step's records were not computed (dynamics other than inline: no extra work for the step log)."""
    if rows is None or "correct" not in rows:
        return None
    flags = [bool(c) for c, k in zip(rows["correct"], keep) if k]
    return sum(flags) / len(flags) if flags else None


def record_epoch_end(ctx: TrainContext, recorder: EpochRecorder) -> bool:
    """epoch-end mode: an eval-mode pass over this rank's share of the training set (no repeats needed: no
    collectives run in an eval pass)."""
    model = ctx.accelerator.unwrap_model(ctx.model)
    indices = list(range(ctx.rank, len(ctx.items), ctx.world))
    rows = evaluate(
        model,
        ctx.adapter,
        ctx.items,
        batch_size=ctx.cfg.eval_batch_size,
        indices=indices,
        objective=ctx.objective,
        stop=lambda: ctx.flag.requested,
    )
    if rows is None:
        return False
    recorder.add(rows)
    return True


def record_adversarial(ctx: TrainContext, recorder: EpochRecorder, epoch: int) -> bool:
    """Adversarial dynamics: PGD on the input embeddings of every example this rank recorded this epoch, after
    the epoch's training and cartography records (engine.training.adversarial: eval mode, weights frozen, the
    start seeded by (seed, epoch, example index)); the rows join the epoch's shard. No collectives run here, so
    ranks may finish at different times. Returns False when stopped by the flag."""
    model = ctx.accelerator.unwrap_model(ctx.model)
    position = {it.example_id: i for i, it in enumerate(ctx.items)}
    indices = sorted(position[i] for i in recorder.recorded_ids())
    settings = PGDSettings.from_config(ctx.cfg)
    if ctx.accelerator.is_main_process:
        radius = f", radius {settings.radius:g}" if settings.radius else ""
        append_event(
            ctx.run_dir,
            "log",
            message=f"epoch {epoch + 1}: adversarial pass (PGD on input embeddings: K {settings.steps}, "
            f"eta {settings.step_size:g}, eps0 {settings.init_norm:g}{radius}) over {len(indices)} examples"
            + (" on this rank" if ctx.world > 1 else ""),
        )
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
        stop=lambda: ctx.flag.requested,
    )
    if rows is None:
        return False
    recorder.add_adversarial(rows)
    return True


class ProgressReporter:
    """Rank 0's `progress` events, throttled to about one a second, and its per-step log (storage.steplog:
    loss, batch accuracy and learning rate of every step, for the run view's curves), written with them."""

    def __init__(self, run_dir: Path, n_epochs: int, start_epoch: int) -> None:
        self.run_dir = run_dir
        self.n_epochs = n_epochs
        self.start_epoch = start_epoch
        self.t0 = time.monotonic()
        self.last = 0.0
        self.examples = 0
        self.steps_done = 0
        self.loss_sum = 0.0
        self.loss_n = 0
        self.epoch = -1
        self.pending_steps: list[dict[str, Any]] = []  # storage.steplog rows not yet written

    def step(
        self,
        epoch: int,
        step: int,
        total: int,
        n_examples: int,
        loss: float,
        accuracy: float | None = None,
        lr: float | None = None,
    ) -> None:
        if epoch != self.epoch:
            self.epoch, self.loss_sum, self.loss_n = epoch, 0.0, 0
        self.examples += n_examples
        self.steps_done += 1
        self.loss_sum += loss
        self.loss_n += 1
        self.pending_steps.append(
            {"epoch": epoch, "step": step, "steps": total, "loss": loss, "accuracy": accuracy, "lr": lr}
        )
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and step not in (1, total):
            return
        self.last = now
        # the step log goes with the progress event: one small append a second, and always at the epoch's end
        append_steps(self.run_dir, self.pending_steps)
        self.pending_steps = []
        elapsed = now - self.t0
        remaining = (self.n_epochs - epoch - 1) * total + (total - step)
        append_event(
            self.run_dir,
            "progress",
            epoch=epoch,
            n_epochs=self.n_epochs,
            step=step,
            total=total,
            examples_per_s=round(self.examples / elapsed, 2) if elapsed > 0 else None,
            eta_s=round(remaining * elapsed / self.steps_done, 1),
            loss=round(self.loss_sum / self.loss_n, 5),
        )


# ---- checkpoints ---------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(ctx: TrainContext, epochs_done: int) -> None:
    """Everything needed to continue after `epochs_done` complete epochs, written atomically (temp + rename).
    The sampler needs no state of its own: epoch e's order is a function of (seed, e)."""
    from accelerate.utils import gather_object

    states = gather_object([rng_state()]) if ctx.world > 1 else [rng_state()]
    if ctx.accelerator.is_main_process:
        path = ctx.run_dir / CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "epochs_done": epochs_done,
            "world": ctx.world,
            "model": ctx.accelerator.unwrap_model(ctx.model).state_dict(),
            "optimizer": ctx.optimizer.state_dict(),
            "scheduler": ctx.scheduler.state_dict(),
            "rng": states,
        }
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save(payload, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    ctx.accelerator.wait_for_everyone()


def load_checkpoint(ctx: TrainContext) -> int:
    """Restore the last complete epoch; returns how many epochs it holds (0 without a checkpoint)."""
    path = ctx.run_dir / CHECKPOINT
    if not path.is_file():
        return 0
    payload = torch.load(path, map_location="cpu", weights_only=False)
    ctx.accelerator.unwrap_model(ctx.model).load_state_dict(payload["model"])
    ctx.optimizer.load_state_dict(payload["optimizer"])
    ctx.scheduler.load_state_dict(payload["scheduler"])
    states = payload["rng"]
    set_rng_state(states[ctx.rank] if ctx.rank < len(states) else states[0])
    return int(payload["epochs_done"])


def discard_partial_epochs(run_dir: Path, first_epoch: int) -> None:
    """Shards of epochs at or after the resume point belong to work that is redone; remove them."""
    folder = dynamics_dir(run_dir)
    if folder.is_dir():
        for sub in folder.glob("epoch=*"):
            if int(sub.name.split("=")[1]) >= first_epoch:
                shutil.rmtree(sub, ignore_errors=True)


# ---- the job body ----------------------------------------------------------------------------------------


def make_accelerator(cfg: TrainConfig) -> Any:
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    precision = cfg.mixed_precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "no"
    return Accelerator(mixed_precision=precision, cpu=not cuda)


def setup(run_dir: Path, flag: StopFlag) -> TrainContext:
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    raw = read_config(run_dir)
    if raw is None:
        raise FileNotFoundError(f"{run_dir}/config.json is missing")
    cfg = TrainConfig.from_dict(raw)
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)
    if torch.cuda.is_available():
        # CPU kernels are deterministic already; there the switch only costs (seconds per new batch shape)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    tokenizer = load_tokenizer(cfg.model)
    adapter = build_adapter(cfg, tokenizer)
    items = adapter.encode(pq.read_table(run_dir / "inputs" / "train.parquet"))
    model = load_model(adapter, cfg.model)
    optimizer = make_optimizer(model, cfg)
    world = accelerator.num_processes
    steps_per_epoch = math.ceil(math.ceil(len(items) / world) / cfg.batch_size)
    total = math.ceil(steps_per_epoch / max(1, cfg.grad_accum)) * cfg.epochs
    # Not handed to accelerator.prepare: its wrapper steps the schedule once per process per call.
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model, optimizer = accelerator.prepare(model, optimizer)
    return TrainContext(
        cfg, run_dir, accelerator, model, optimizer, scheduler, adapter, items, flag, steps_per_epoch
    )


AfterTraining = Callable[[Any, TrainConfig, Callable[[], bool]], None]
AfterEpoch = Callable[[Any, TrainConfig, Callable[[], bool]], dict[str, float]]


def run_training(
    run_dir: Path,
    flag: StopFlag,
    after_training: AfterTraining | None = None,
    after_epoch: AfterEpoch | None = None,
) -> str:
    """Train (or resume) the run in `run_dir` on this rank; returns 'done' or 'cancelled'.

    `after_training(model, cfg, stop)` runs on rank 0 once the final model is saved (the job scores the
    evaluation sets there: training itself knows nothing of evaluation); `after_epoch(model, cfg, stop)` on rank
    0 after each epoch's checkpoint, its numbers joining the epoch's summary (per-epoch evaluation)."""
    ctx = setup(run_dir, flag)
    cfg, acc = ctx.cfg, ctx.accelerator
    start = load_checkpoint(ctx)
    main = acc.is_main_process
    if main:
        discard_partial_epochs(run_dir, start)
        append_event(
            run_dir,
            "log",
            message=f"training {cfg.task} on {len(ctx.items)} examples, {ctx.world} process(es), device "
            f"{acc.device}, epochs {start + 1}..{cfg.epochs}"
            + (f" (resumed after epoch {start})" if start else ""),
        )
        ctx.progress = ProgressReporter(run_dir, cfg.epochs, start)
    acc.wait_for_everyone()
    for epoch in range(start, cfg.epochs):
        t0 = time.monotonic()
        recorder = (
            EpochRecorder(
                ctx.rank,
                ctx.adapter.extra_columns,
                [it.example_id for it in ctx.items],
                adversarial=cfg.adversarial_dynamics,
            )
            if cfg.dynamics != "none"
            else None
        )
        if recorder is not None:
            recorder.reset(epoch)
        if not train_one_epoch(ctx, epoch, recorder if cfg.dynamics == "inline" else None):
            return "cancelled"
        if recorder is not None and cfg.dynamics == "epoch-end":
            record_epoch_end(ctx, recorder)  # stops early on the flag; the agreement below then cancels
        t_adv = time.monotonic()
        if recorder is not None and cfg.adversarial_dynamics and not ctx.flag.requested:
            record_adversarial(ctx, recorder, epoch)  # likewise
        t_adv = time.monotonic() - t_adv
        if ctx.should_stop():  # every rank agrees before the collectives of the epoch end
            return "cancelled"
        totals = torch.tensor(
            recorder.totals() if recorder is not None else (0.0, 0.0, 0, 0.0, 0.0, 0), dtype=torch.float64
        )
        if recorder is not None:
            recorder.write(run_dir)
        totals = acc.reduce(totals.to(acc.device), reduction="sum").cpu() if ctx.world > 1 else totals
        save_checkpoint(ctx, epoch + 1)  # every rank's shard is on disk once this barrier passes
        if main:
            n = int(totals[2])
            metrics = {"seconds": round(time.monotonic() - t0, 2), "examples": n}
            if n:
                metrics.update(train_loss=float(totals[0]) / n, train_accuracy=float(totals[1]) / n)
            attacked = int(totals[5])
            if attacked:
                metrics.update(
                    adv_loss=float(totals[3]) / attacked,
                    adv_accuracy=float(totals[4]) / attacked,
                    adv_seconds=round(t_adv, 2),
                )
            if after_epoch is not None:  # after the checkpoint: the epoch is safe whatever this costs
                model = ctx.accelerator.unwrap_model(ctx.model)
                metrics.update(after_epoch(model, cfg, lambda: ctx.flag.requested))
            append_event(run_dir, "epoch_end", epoch=epoch, metrics=metrics)
    if main:
        model = save_final_model(ctx)
        if after_training is not None:
            after_training(model, cfg, lambda: ctx.flag.requested)
    acc.wait_for_everyone()
    # stopped while scoring the eval sets: the checkpoint stays, and a resume only redoes the evaluation
    return "cancelled" if flag.requested else "done"


def save_final_model(ctx: TrainContext) -> Any:
    """Save the final model and tokenizer (for `dynascope eval`) into model/ (temp folder + rename)."""
    model = ctx.accelerator.unwrap_model(ctx.model)
    final = ctx.run_dir / "model"
    tmp = ctx.run_dir / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    ctx.adapter.tokenizer.save_pretrained(tmp)  # type: ignore[attr-defined]
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return model
