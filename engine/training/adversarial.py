"""Adversarial dynamics (Zheng et al. 2023, "Characterizing the Impacts of Instances on Robustness", seed 003):
PGD on the input embeddings of every training example, once per epoch, recording its adversarial loss and
whether the attacked prediction is still correct (sensitivity, adversarial variability and flip rate are
computed from these rows by `storage.metrics`).

The attack, per unit (a classification input, a text pair included: both texts are one embedded sequence and
are perturbed together; a QA window):

- start: delta_0 = a uniform(-1, 1) draw on the unit's non-padding tokens (special tokens included, as in the
  authors' code, which masks with the attention mask), rescaled to Frobenius norm exactly `init_norm` (eps0).
  The authors scale the draw by eps0 / sqrt(tokens * hidden), which gives a norm of about eps0 / sqrt(3); here
  the norm is eps0 as asked. The draw comes from a generator seeded with (seed, epoch, example index), never
  from the global RNG: it does not depend on the batch, the rank or the padding, and it leaves the training
  RNG streams untouched, so a resumed run records the same rows.
- K ascent steps: delta_k = delta_{k-1} + eta * g / ||g||_F, g the gradient of the unit's loss with respect to
  delta (masked to the non-padding tokens), normalised per unit (the authors' L2 variant; the paper's formula
  writes sign(g)); then, when a projection radius is set, delta_k is scaled back into the L2 ball of that
  radius (the paper and the authors' code leave it unbounded by default).
- record: one more forward pass at delta_K. The adversarial loss is the cross-entropy on the gold label
  (QA: of the gold start and end tokens, per window) whatever the run's training objective; per example it is
  what the task adapter records as `loss` (classification: the unit's loss; QA: the loss of the window holding
  the answer, the best one if several) and `adv_correct` is the adapter's `correct` under attack (QA: the
  predicted span over all attacked windows still matches a gold answer).

The authors' loop runs K forward passes but stops after K - 1 updates (its last pass only records); here the
K updates are all made and the record comes from pass K + 1, which is the x^K of the paper's formula.

Mode: eval. Dropout off makes the record a function of the weights at the end of the epoch (theta_t in the
paper's eq. 2) and of the seeded start only: deterministic, so a resumed run and an uninterrupted one agree, and
it consumes no random numbers from the training streams. (The authors' code attacks in train mode, with
dropout, and back-propagates into the weights.) Gradients: the weights are frozen for the pass
(requires_grad False) and `torch.autograd.grad` asks for the gradient of the perturbation only, so no weight
gradient is computed or accumulated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from engine.tasks import Batch, ForwardOut, TaskAdapter, embed
from engine.training.objectives import compute, get_objective

ADV_STREAM = 0xAD5E  # keeps the start's seed apart from other (seed, epoch) streams such as the shuffle
ADVERSARIAL_OBJECTIVE = "cross_entropy"  # the paper's l(x, y, theta): plain cross-entropy on the gold label


@dataclass(frozen=True)
class PGDSettings:
    """K, eta, eps0 and the optional projection radius (defaults: the paper's appendix, Table 4)."""

    steps: int = 8
    step_size: float = 0.08
    init_norm: float = 0.05
    radius: float | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> PGDSettings:
        return cls(
            steps=int(cfg.adv_steps),
            step_size=float(cfg.adv_lr),
            init_norm=float(cfg.adv_init),
            radius=float(cfg.adv_radius) if cfg.adv_radius else None,
        )


@dataclass
class PGDOutput:
    """The attacked forward output of one batch, and (when asked) the perturbation's per-unit L2 norm at the
    start and after each step: `norms[0]` is the start, `norms[k]` after step k."""

    out: ForwardOut
    norms: list[torch.Tensor] = field(default_factory=list)


@contextmanager
def frozen(model: Any) -> Iterator[None]:
    """Eval mode and no weight gradients for the block; the previous mode and flags come back afterwards."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    was_training = model.training
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        model.train(was_training)


def random_start(
    batch: Batch, indices: Sequence[int], *, seed: int, epoch: int, init_norm: float, hidden: int
) -> torch.Tensor:
    """delta_0 [units, length, hidden] (float32, on the CPU): per unit, uniform noise on the non-padding tokens
    rescaled to norm `init_norm`. `indices[j]` is example j's index in the run's example list; its units (QA
    windows) are drawn in order from the generator seeded with (seed, epoch, index)."""
    mask = batch.tensors["attention_mask"].cpu()
    units, width = mask.shape
    delta = torch.zeros((units, width, hidden), dtype=torch.float32)
    if init_norm <= 0:
        return delta
    owner = batch.unit_owner().cpu().tolist()
    rngs: dict[int, np.random.Generator] = {}
    for u, j in enumerate(owner):
        rng = rngs.setdefault(j, np.random.default_rng([ADV_STREAM, seed, epoch, int(indices[j])]))
        tokens = int(mask[u].sum())
        draw = rng.uniform(-1.0, 1.0, size=(tokens, hidden))
        norm = float(np.linalg.norm(draw))
        if tokens and norm > 0:
            positions = torch.nonzero(mask[u], as_tuple=True)[0]
            delta[u, positions] = torch.from_numpy(draw * (init_norm / norm)).float()
    return delta


def _unit_norms(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)


def pgd_batch(
    model: Any,
    adapter: TaskAdapter,
    batch: Batch,
    start: torch.Tensor,
    settings: PGDSettings,
    *,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
    track_norms: bool = False,
) -> PGDOutput:
    """PGD from `start` on one batch (the model frozen and in eval mode by the caller, see `frozen`); returns the
    forward output at the final perturbation."""
    objective = get_objective(ADVERSARIAL_OBJECTIVE)
    with torch.no_grad():
        base = embed(model, batch).detach()
    mask = batch.tensors["attention_mask"].to(base.device)[:, :, None].to(torch.float32)
    delta = start.detach().to(base.device, torch.float32, copy=True)  # never the caller's tensor
    norms = [_unit_norms(delta).cpu()] if track_norms else []
    for _ in range(settings.steps):
        delta.requires_grad_(True)
        with autocast():
            out = compute(adapter, objective, model, batch, inputs_embeds=base + delta.to(base.dtype))
        (grad,) = torch.autograd.grad(out.losses.float().sum(), delta)
        grad = grad * mask
        scale = settings.step_size / _unit_norms(grad).clamp_min(1e-12)
        delta = (delta.detach() + grad * scale[:, None, None]).detach()
        if settings.radius is not None:
            delta = (
                delta * (settings.radius / _unit_norms(delta).clamp_min(1e-12)).clamp(max=1.0)[:, None, None]
            )
        if track_norms:
            norms.append(_unit_norms(delta).cpu())
    with torch.no_grad(), autocast():
        out = compute(adapter, objective, model, batch, inputs_embeds=base + delta.to(base.dtype))
    return PGDOutput(
        ForwardOut(out.losses.detach().float(), {k: v.detach() for k, v in out.logits.items()}), norms
    )


def pgd_records(
    model: Any,
    adapter: TaskAdapter,
    items: Sequence[Any],
    indices: Sequence[int],
    settings: PGDSettings,
    *,
    seed: int,
    epoch: int,
    batch_size: int,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
    stop: Callable[[], bool] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    track_norms: bool = False,
) -> dict[str, list[Any]] | None:
    """The adversarial record of the items at `indices` (indices into the run's example list, which also seed
    each example's start): columns example_id, adv_loss, adv_correct, and with `track_norms` a per-example list
    `norms` (per unit: the norm at the start and after each step). None when `stop()` turned true."""
    device = next(model.parameters()).device
    hidden = int(model.get_input_embeddings().embedding_dim)
    rows: dict[str, list[Any]] = {"example_id": [], "adv_loss": [], "adv_correct": []}
    if track_norms:
        rows["norms"] = []
    total = -(-len(indices) // batch_size)
    with frozen(model):
        for done, i in enumerate(range(0, len(indices), batch_size), start=1):
            if stop is not None and stop():
                return None
            chunk = list(indices[i : i + batch_size])
            batch = adapter.collate([items[j] for j in chunk]).to(device)
            start = random_start(
                batch, chunk, seed=seed, epoch=epoch, init_norm=settings.init_norm, hidden=hidden
            )
            result = pgd_batch(
                model, adapter, batch, start, settings, autocast=autocast, track_norms=track_norms
            )
            record = adapter.record(batch, result.out)
            rows["example_id"].extend(record["example_id"])
            rows["adv_loss"].extend(record["loss"])
            rows["adv_correct"].extend(record["correct"])
            if track_norms:
                owner = batch.unit_owner().cpu().tolist()
                per_step = torch.stack(result.norms, dim=1).tolist()  # [units, steps + 1]
                for j in range(batch.n_examples):
                    rows["norms"].append([per_step[u] for u, o in enumerate(owner) if o == j])
            if on_batch is not None:
                on_batch(done, total)
    return rows
