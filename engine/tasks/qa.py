"""Extractive QA (SQuAD v1.1 and v2.0) with long contexts split into overlapping windows.

Windows: the fast tokenizer's `return_overflowing_tokens` with a stride; `return_offsets_mapping` maps each
context token back to its characters, so a token span becomes a character span of the original context.
Training targets depend on the run's QA objective (`engine.training.objectives.QA_OBJECTIVES`):
- cls (the default; the usual Hugging Face convention): a window that holds the whole (first) gold answer points at
  its tokens; any other window, and every window of an unanswerable v2.0 question, points at [CLS].
- uniform-null (seed 001, section 5.2): a window that holds gold answers spreads its start and end targets evenly
  over the distinct gold spans it holds (extra answers are additional targets); any other window (an unanswerable
  question, or a window without the answer) is an unanswerable sequence, every one of its n tokens (padding
  excluded) the start and the end with probability 1/n.
The sequence-tagging loss (`engine.training.losses.SpanTagging`) reads the candidate and gold spans (`span_tags`).

Dynamics, per example (all scores are log-probabilities: log p(start) + log p(end) within one window, so spans of
different windows are comparable):
- gold_prob = p(start = gold start) * p(end = gold end) in the window holding the answer (the best one if several);
  an example whose answer lies outside every window gets gold_prob 0, answer_in_window false, and null margin
  and EL2N (nothing to measure), and its loss is the mean loss of its windows (the [CLS] targets it trained on).
- margin (log space) = gold span score minus the best other span score in that same window (valid spans of at
  most `max_answer_length` tokens inside the context; for v2.0 under cls the [CLS] "no answer" counts as a span).
- el2n = mean over start and end of || softmax - one-hot(gold) ||_2 in that window (uniform-null: minus the
  window's target distribution).
- loss = that window's training loss (the run's objective; with cross-entropy, the mean of the start and end
  cross-entropy).
- prediction = the best valid span over all windows; for v2.0 "" (no answer) when the [CLS] score beats it
  (the smallest [CLS] score over the windows, as the Hugging Face post-processing does). uniform-null: the valid
  span with the best raw score s_i + e_j (logits) over all windows, and for v2.0 "" when that score is negative.
- correct = the prediction equals a gold answer after SQuAD normalisation (an unanswerable question: the
  prediction is "").
- an unanswerable question under cls: its gold span is [CLS] in every window, so gold_prob = p(start = [CLS]) *
  p(end = [CLS]) in its best window, margin and EL2N as above. Under uniform-null there is no gold span; what
  decides is the best raw span score m over all its windows: gold_prob = sigmoid(-m), the probability that the
  example has no answer (above 0.5 exactly when the prediction is "", i.e. correct), margin = -m, and loss and
  EL2N (against the uniform target) are the means over its windows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from transformers import AutoModelForQuestionAnswering

from engine.tasks import Batch, ForwardOut, Head, Logits, model_inputs, pad_sequences
from engine.tasks.squad_metric import best_over_golds

NEG = -1e4  # masks padding out of the start/end softmax (finite: -inf would turn 0 * inf into NaN)


@dataclass
class Window:
    input_ids: list[int]
    token_type_ids: list[int] | None
    offsets: np.ndarray  # [L, 2] character offsets into the context; (-1, -1) outside the context
    start: int  # training target token positions ([CLS] = 0 when the answer is not in this window)
    end: int
    has_gold: bool  # the window holds its target (cls: always true for an unanswerable question, [CLS])
    spans: list[tuple[int, int]] = field(default_factory=list)  # distinct token spans of the golds it holds


@dataclass
class QAItem:
    example_id: str
    context: str
    golds: list[str]
    windows: list[Window]


class QAAdapter:
    task = "qa"
    extra_columns: dict[str, pa.DataType] = {"answer_in_window": pa.bool_(), "n_windows": pa.int32()}

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_length: int,
        stride: int | None,
        allow_null: bool,
        max_answer_length: int = 30,
        qa_objective: str = "cls",
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("extractive QA needs a fast tokenizer (offsets and overflowing windows)")
        self.tokenizer = tokenizer
        self.max_length = max_length
        # The question may take at most half the window, so the stride always fits in what is left.
        self.max_question = max(4, max_length // 2 - 2)
        self.stride = min(stride if stride is not None else max_length // 4, max_length // 4)
        self.allow_null = allow_null
        self.max_answer_length = max_answer_length
        if qa_objective not in ("cls", "uniform-null"):
            raise ValueError(f"unknown QA objective {qa_objective!r}; expected cls or uniform-null")
        self.qa_objective = qa_objective

    def model_class(self) -> Any:
        return AutoModelForQuestionAnswering

    def model_kwargs(self) -> dict[str, Any]:
        return {}

    def _cap_questions(self, questions: list[str]) -> list[str]:
        enc = self.tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
        out = []
        for q, offs in zip(questions, enc["offset_mapping"]):
            out.append(q if len(offs) <= self.max_question else q[: offs[self.max_question - 1][1]])
        return out

    def encode(self, table: pa.Table) -> list[QAItem]:
        ids = [str(x) for x in table.column("example_id").to_pylist()]
        questions = self._cap_questions([q.lstrip() for q in table.column("text").to_pylist()])
        contexts = table.column("text_pair").to_pylist()
        answers = [json.loads(a) if a else [] for a in table.column("answers").to_pylist()]
        impossible = (
            table.column("is_impossible").to_pylist()
            if "is_impossible" in table.column_names
            else [None] * len(ids)
        )
        enc = self.tokenizer(
            questions,
            contexts,
            truncation="only_second",
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        items = [QAItem(ids[i], contexts[i], [a["text"] for a in answers[i]], []) for i in range(len(ids))]
        type_ids = enc.get("token_type_ids")
        for f, ex in enumerate(enc["overflow_to_sample_mapping"]):
            seq = np.array([-1 if s is None else s for s in enc.sequence_ids(f)])
            offsets = np.array(enc["offset_mapping"][f], dtype=np.int64)
            offsets[seq != 1] = -1
            unanswerable = bool(impossible[ex]) or not answers[ex]
            ctx = np.nonzero(seq == 1)[0]
            spans = [] if unanswerable else held_spans(offsets, ctx, answers[ex])
            if self.qa_objective == "uniform-null":
                (start, end), has_gold = (spans[0] if spans else (0, 0)), bool(spans)
            else:
                first = None if unanswerable else token_span(offsets, ctx, answers[ex][0])
                (start, end), has_gold = (first or (0, 0)), unanswerable or first is not None
            items[ex].windows.append(
                Window(
                    enc["input_ids"][f],
                    type_ids[f] if type_ids is not None else None,
                    offsets,
                    start,
                    end,
                    has_gold,
                    spans,
                )
            )
        return items

    def collate(self, items: list[QAItem]) -> Batch:
        windows = [w for it in items for w in it.windows]
        owner = [j for j, it in enumerate(items) for _ in it.windows]
        input_ids = pad_sequences([w.input_ids for w in windows], self.tokenizer.pad_token_id or 0)
        width = input_ids.shape[1]
        context = torch.zeros((len(windows), width), dtype=torch.bool)
        for i, w in enumerate(windows):
            context[i, : len(w.offsets)] = torch.from_numpy(w.offsets[:, 0] >= 0)
        tensors = {
            "input_ids": input_ids,
            "attention_mask": pad_sequences([[1] * len(w.input_ids) for w in windows], 0),
            "start_positions": torch.tensor([w.start for w in windows], dtype=torch.long),
            "end_positions": torch.tensor([w.end for w in windows], dtype=torch.long),
            "context_mask": context,
            "gold_spans": gold_span_tensor(windows),
        }
        if self.qa_objective == "uniform-null":
            tensors["start_target"], tensors["end_target"] = uniform_null_targets(windows, width)
        if windows[0].token_type_ids is not None:
            tensors["token_type_ids"] = pad_sequences([w.token_type_ids or [] for w in windows], 0)
        meta = {"owner": owner, "items": items, "windows": windows}
        return Batch(tensors, [it.example_id for it in items], meta)

    def forward(self, model: Any, batch: Batch, inputs_embeds: torch.Tensor | None = None) -> Logits:
        out = model(**model_inputs(batch, inputs_embeds))
        return {"start_logits": out.start_logits.float(), "end_logits": out.end_logits.float()}

    def heads(self, batch: Batch, logits: Logits) -> list[Head]:
        """Two heads per window, start and end token, over the window's tokens (padding masked out)."""
        valid = batch.tensors["attention_mask"] != 0
        start, end = self.masked(batch, logits)
        return [
            Head(start, batch.tensors["start_positions"], valid, batch.tensors.get("start_target")),
            Head(end, batch.tensors["end_positions"], valid, batch.tensors.get("end_target")),
        ]

    def span_candidates(self, batch: Batch) -> torch.Tensor:
        """[units, L, L]: the spans a prediction may take, context tokens i <= j < i + max_answer_length."""
        ctx = batch.tensors["context_mask"]
        width = ctx.shape[1]
        band = torch.ones((width, width), dtype=torch.bool, device=ctx.device).triu()
        band &= ~torch.ones_like(band).triu(self.max_answer_length)  # 0 <= end - start < max_answer_length
        return band[None] & ctx[:, :, None] & ctx[:, None, :]

    def span_tags(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The candidate spans and, among them, the gold spans of each window (none in a window without an
        answer), for the sequence-tagging loss."""
        candidates = self.span_candidates(batch)
        spans = batch.tensors["gold_spans"]
        held = spans[..., 0] >= 0
        rows = torch.arange(spans.shape[0], device=spans.device)[:, None].expand(spans.shape[:2])
        gold = torch.zeros_like(candidates)
        gold[rows[held], spans[..., 0][held], spans[..., 1][held]] = True
        return candidates, gold & candidates

    @staticmethod
    def masked(batch: Batch, logits: Logits) -> tuple[torch.Tensor, torch.Tensor]:
        """Start and end logits with the padding set to NEG, so it takes no probability mass."""
        pad = batch.tensors["attention_mask"] == 0
        return logits["start_logits"].masked_fill(pad, NEG), logits["end_logits"].masked_fill(pad, NEG)

    @torch.no_grad()
    def window_scores(self, batch: Batch, out: ForwardOut) -> dict[str, list[Any]]:
        """Per window: best valid span (score, token start, token end), [CLS] score, gold score, margin, EL2N."""
        start, end = self.masked(batch, {k: v.detach().float() for k, v in out.logits.items()})
        start_lp, end_lp = start.log_softmax(-1), end.log_softmax(-1)
        n, width = start_lp.shape
        s, e = batch.tensors["start_positions"], batch.tensors["end_positions"]
        valid = self.span_candidates(batch)
        scores = start_lp[:, :, None] + end_lp[:, None, :]
        spans = scores.masked_fill(~valid, float("-inf"))
        best, flat = spans.view(n, -1).max(-1)
        # raw span scores s_i + e_j (logits): what uniform-null's "negative means no answer" rule reads
        raw = (start[:, :, None] + end[:, None, :]).masked_fill(~valid, float("-inf"))
        best_raw, flat_raw = raw.view(n, -1).max(-1)
        null = start_lp[:, 0] + end_lp[:, 0]
        rows = torch.arange(n, device=start_lp.device)
        gold = scores[rows, s, e]
        others = spans.clone()
        if self.allow_null and self.qa_objective == "cls":  # [CLS] is the "no answer" span under cls only
            others[:, 0, 0] = null
        others[rows, s, e] = float("-inf")
        other_best = others.view(n, -1).max(-1).values
        start_target = batch.tensors.get("start_target", F.one_hot(s, width).float())
        end_target = batch.tensors.get("end_target", F.one_hot(e, width).float())
        el2n = ((start_lp.exp() - start_target).norm(dim=-1) + (end_lp.exp() - end_target).norm(dim=-1)) / 2
        return {
            "best": best.tolist(),
            "best_start": (flat // width).tolist(),
            "best_end": (flat % width).tolist(),
            "best_raw": best_raw.tolist(),
            "best_raw_start": (flat_raw // width).tolist(),
            "best_raw_end": (flat_raw % width).tolist(),
            "null": null.tolist(),
            "gold": gold.tolist(),
            "margin": (gold - other_best).tolist(),
            "el2n": el2n.tolist(),
            "loss": out.losses.detach().float().tolist(),
        }

    def record(self, batch: Batch, out: ForwardOut) -> dict[str, list[Any]]:
        w = self.window_scores(batch, out)
        items: list[QAItem] = batch.meta["items"]
        windows: list[Window] = batch.meta["windows"]
        by_item: list[list[int]] = [[] for _ in items]
        for i, j in enumerate(batch.meta["owner"]):
            by_item[j].append(i)
        cols: dict[str, list[Any]] = {
            k: [] for k in ("example_id", "gold_prob", "correct", "loss", "margin", "el2n", "prediction")
        }
        cols["answer_in_window"], cols["n_windows"] = [], []
        for item, feats in zip(items, by_item):
            holding = [i for i in feats if windows[i].has_gold]
            if self.qa_objective == "uniform-null" and not item.golds:
                top = max(w["best_raw"][i] for i in feats)  # -inf: no window has a span at all
                gold_prob, loss, margin, el2n = (
                    no_answer_probability(top),
                    float(np.mean([w["loss"][i] for i in feats])),
                    -top if math.isfinite(top) else None,
                    float(np.mean([w["el2n"][i] for i in feats])),
                )
                holding = feats  # nothing to hold: no window misses the answer
            elif holding:
                g = max(holding, key=lambda i: w["gold"][i])
                gold_prob, loss, margin, el2n = (
                    float(np.exp(w["gold"][g])),
                    w["loss"][g],
                    w["margin"][g],
                    w["el2n"][g],
                )
            else:
                gold_prob, loss, margin, el2n = 0.0, float(np.mean([w["loss"][i] for i in feats])), None, None
            prediction = self._predict(item, feats, windows, w)
            cols["example_id"].append(item.example_id)
            cols["gold_prob"].append(gold_prob)
            cols["correct"].append(best_over_golds(prediction, item.golds)[0] == 1.0)
            cols["loss"].append(loss)
            cols["margin"].append(margin)
            cols["el2n"].append(el2n)
            cols["prediction"].append(prediction)
            cols["answer_in_window"].append(bool(holding))
            cols["n_windows"].append(len(feats))
        return cols

    def _predict(self, item: QAItem, feats: list[int], windows: list[Window], w: dict[str, list[Any]]) -> str:
        if self.qa_objective == "uniform-null":
            return self._predict_uniform_null(item, feats, windows, w)
        candidates = [i for i in feats if w["best"][i] != float("-inf")]
        if not candidates:
            return ""
        b = max(candidates, key=lambda i: w["best"][i])
        if self.allow_null and min(w["null"][i] for i in feats) > w["best"][b]:
            return ""
        offsets = windows[b].offsets
        return item.context[int(offsets[w["best_start"][b], 0]) : int(offsets[w["best_end"][b], 1])]

    def _predict_uniform_null(
        self, item: QAItem, feats: list[int], windows: list[Window], w: dict[str, list[Any]]
    ) -> str:
        """The span with the best raw score s_i + e_j over all windows; v2.0: "" when that score is negative."""
        candidates = [i for i in feats if w["best_raw"][i] != float("-inf")]
        if not candidates:
            return ""
        b = max(candidates, key=lambda i: w["best_raw"][i])
        if self.allow_null and no_answer(w["best_raw"][b]):
            return ""
        offsets = windows[b].offsets
        return item.context[int(offsets[w["best_raw_start"][b], 0]) : int(offsets[w["best_raw_end"][b], 1])]


def no_answer(best_span_score: float) -> bool:
    """uniform-null's inference rule (seed 001): no answer exactly when the best span score s_i + e_j is negative."""
    return best_span_score < 0


def no_answer_probability(best_span_score: float) -> float:
    """sigmoid(-m) of the best span score m: above 0.5 exactly when `no_answer(m)`; 1 when there is no span."""
    if best_span_score == float("-inf"):
        return 1.0
    return float(0.5 * (1 + math.tanh(-best_span_score / 2)))


def token_span(offsets: np.ndarray, ctx: np.ndarray, answer: dict[str, Any]) -> tuple[int, int] | None:
    """The answer's (start, end) tokens in a window, or None when the window does not hold all of it."""
    s_char = answer["answer_start"]
    e_char = s_char + len(answer["text"])
    if not (len(ctx) and offsets[ctx[0], 0] <= s_char and offsets[ctx[-1], 1] >= e_char):
        return None
    # first token ending after the answer start; last token starting before the answer end
    start = int(ctx[np.nonzero(offsets[ctx, 1] > s_char)[0][0]])
    end = int(ctx[np.nonzero(offsets[ctx, 0] < e_char)[0][-1]])
    return start, end


def held_spans(offsets: np.ndarray, ctx: np.ndarray, answers: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """The distinct token spans of the answers a window holds whole, in the answers' order."""
    spans = (token_span(offsets, ctx, a) for a in answers)
    return list(dict.fromkeys(span for span in spans if span is not None))


def gold_span_tensor(windows: list[Window]) -> torch.Tensor:
    """[units, k, 2] each window's gold token spans, padded with -1 (k >= 1)."""
    k = max(1, *(len(w.spans) for w in windows))
    out = torch.full((len(windows), k, 2), -1, dtype=torch.long)
    for i, w in enumerate(windows):
        if w.spans:
            out[i, : len(w.spans)] = torch.tensor(w.spans, dtype=torch.long)
    return out


def uniform_null_targets(windows: list[Window], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uniform-null's start and end target distributions [units, width]: a window holding gold spans gives each
    of its k distinct spans 1/k at its start and its end; any other window gives each of its n tokens (padding
    excluded) 1/n."""
    start = torch.zeros((len(windows), width))
    end = torch.zeros((len(windows), width))
    for i, w in enumerate(windows):
        if w.spans:
            for s, e in w.spans:
                start[i, s] += 1 / len(w.spans)
                end[i, e] += 1 / len(w.spans)
        else:
            start[i, : len(w.input_ids)] = end[i, : len(w.input_ids)] = 1 / len(w.input_ids)
    return start, end
