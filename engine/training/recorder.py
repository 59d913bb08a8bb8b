"""Per-example training dynamics: rows are gathered in memory during an epoch and written once, at epoch end, as
one Parquet shard per rank (`storage.artifacts.write_shard`: temp name + rename, so a crash never leaves a
half shard where sync would find it).

The shard is stored compactly (see storage.artifacts): each example by its integer index in the run's id list
(`dynamics/ids.parquet`), floats as float32 (they come from float32 logits). The recorder is given the run's
whole example list (the training items, in order) so that every rank and every epoch registers the same list and
an example keeps its index; the ids are mapped to indices once per shard, at write time.

Distributed sampling pads ranks with repeated examples so every rank takes the same number of steps; the sampler
marks those repeats and the recorder drops them, so an epoch holds each example exactly once across ranks.

With adversarial dynamics (`engine.training.adversarial`) the shard also holds `adv_loss` and `adv_correct`
(storage.metrics.ADVERSARIAL_COLUMNS), attached per example id after the epoch's PGD pass over the examples this
rank recorded; the columns are null for an example the pass did not reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from storage.artifacts import write_shard

# The rows as recorded (storage.metrics.DYNAMICS_COLUMNS, floats in the float32 they are computed in); write_shard
# stores them keyed by the example index instead of the id string.
BASE_SCHEMA = pa.schema(
    [
        ("epoch", pa.int32()),
        ("rank", pa.int32()),
        ("example_id", pa.string()),
        ("gold_prob", pa.float32()),
        ("correct", pa.bool_()),
        ("loss", pa.float32()),
        ("margin", pa.float32()),
        ("el2n", pa.float32()),
        ("prediction", pa.string()),
    ]
)
ROW_COLUMNS = [n for n in BASE_SCHEMA.names if n not in ("epoch", "rank")]
ADVERSARIAL_SCHEMA = pa.schema([("adv_loss", pa.float32()), ("adv_correct", pa.bool_())])


class EpochRecorder:
    """Collects the dynamics rows of one rank for one epoch.

    `example_ids` is the run's whole example list in order (the same on every rank); without it the shard's own
    ids are registered (fine for one writer, not for ranks writing at the same time)."""

    def __init__(
        self,
        rank: int,
        extra_columns: dict[str, pa.DataType] | None = None,
        example_ids: Sequence[str] | None = None,
        adversarial: bool = False,
    ) -> None:
        self.rank = rank
        self.adversarial = adversarial
        self.extra = dict(extra_columns or {})
        self.example_ids = list(example_ids) if example_ids is not None else None
        self.schema = BASE_SCHEMA
        for name, dtype in self.extra.items():
            self.schema = self.schema.append(pa.field(name, dtype))
        if adversarial:
            for f in ADVERSARIAL_SCHEMA:
                self.schema = self.schema.append(f)
        self.adv: dict[str, tuple[float, bool]] = {}
        self.columns: dict[str, list[Any]] = {}
        self.epoch = -1
        self.seen: set[str] = set()
        self.reset(0)

    def reset(self, epoch: int) -> None:
        self.epoch = epoch
        self.columns = {name: [] for name in ROW_COLUMNS + list(self.extra)}
        self.seen = set()
        self.adv = {}

    def add(self, rows: dict[str, list[Any]], keep: list[bool] | None = None) -> None:
        """Add one batch of rows; `keep[i]` false marks a sampler repeat, which is dropped."""
        n = len(rows["example_id"])
        chosen = range(n) if keep is None else [i for i in range(n) if keep[i]]
        for i in chosen:
            example_id = rows["example_id"][i]
            if example_id in self.seen:  # belt and braces: a repeat the sampler did not flag
                continue
            self.seen.add(example_id)
            for name, values in self.columns.items():
                values.append(rows[name][i])

    def add_adversarial(self, rows: dict[str, list[Any]]) -> None:
        """Attach adversarial records (example_id, adv_loss, adv_correct) to rows of this epoch, by example id."""
        for example_id, loss, correct in zip(rows["example_id"], rows["adv_loss"], rows["adv_correct"]):
            self.adv[example_id] = (float(loss), bool(correct))

    def recorded_ids(self) -> list[str]:
        """The example ids recorded so far this epoch (this rank's share), in the order they came."""
        return list(self.columns["example_id"])

    def __len__(self) -> int:
        return len(self.columns["example_id"])

    def table(self) -> pa.Table:
        """The rows as recorded (example_id strings); `write` stores them compactly."""
        n = len(self)
        data: dict[str, list[Any]] = {"epoch": [self.epoch] * n, "rank": [self.rank] * n, **self.columns}
        if self.adversarial:
            attacked = [self.adv.get(i) for i in self.columns["example_id"]]
            data["adv_loss"] = [a[0] if a else None for a in attacked]
            data["adv_correct"] = [a[1] if a else None for a in attacked]
        return pa.table(data, schema=self.schema)

    def totals(self) -> tuple[float, float, int, float, float, int]:
        """(sum of losses, number correct, rows, sum of adversarial losses, number still correct under
        attack, attacked rows): reduced across ranks for the epoch summary."""
        attacked = [self.adv[i] for i in self.columns["example_id"] if i in self.adv]
        return (
            float(sum(self.columns["loss"])),
            float(sum(bool(c) for c in self.columns["correct"])),
            len(self),
            float(sum(a[0] for a in attacked)),
            float(sum(a[1] for a in attacked)),
            len(attacked),
        )

    def write(self, run_dir: Path) -> Path:
        return write_shard(run_dir, self.epoch, self.rank, self.table(), self.example_ids)
