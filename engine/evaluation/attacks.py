"""Adversarial attacks on a trained classification run, one example at a time (char-swap) or one batch at a time
(pgd), each returning one result row per example (`ATTACK_SCHEMA`).

Words. A text is split into alternating separators and words (`engine.analysis.attacks.split_words`: a word
is a run of `\\w` characters); "changed word positions" are indices into that word list. An attack only ever replaces whole words
by other non-empty runs of word characters, so the perturbed text splits into the same separators and the same
number of words, and it differs from the original exactly at the reported positions (`changed_positions`
recomputes them).

Queries. Every text the model scores counts one query, the clean prediction included; an example that is wrong
before the attack is not attacked (status `skipped`, 1 query). `max_queries` caps the queries of one example:
candidate batches are cut to what is left of it.

- `char-swap` (TextBugger-style, Li et al. 2019): word importance by deletion (the drop in the gold probability
  when the word is removed, one batched query per text), then greedily, most important word first, the
  character-level bugs of that word (swap two adjacent letters, delete a letter, insert a letter, substitute a
  neighbouring key on a QWERTY keyboard), scored in one batch; the attack stops at the first candidate that
  flips the prediction, otherwise keeps the bug that lowered the gold probability most and moves on, until
  `max_change` of the words (at least one) are changed. Letters are
  drawn from a generator seeded with (seed, example id), so a run (and a resumed one) is reproducible.
- `pgd`: projected gradient ascent on the input embeddings from a zero perturbation (K normalised steps of size
  eta, projected into the L2 ball of radius `budget` over the whole sequence), through
  `engine.training.adversarial`; no text comes out (perturbed text = the original, no changed words). Queries:
  the clean pass, one per step and the final pass.

- `word-swap` (TextFooler-style, Jin et al. 2020, offline): word importance by deletion, substitutes from WordNet
  and the run's own input-embedding neighbours (engine.evaluation.synonyms), stop words never replaced, a part-of-
  speech filter from WordNet, a sentence-similarity threshold (MiniLM mean-pooled embeddings, the similarity of
  each whole candidate text with the original) and a bound on the share of words changed.

Attacked field: the example's `text`; a pair task's `text_pair` is kept as it is.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from engine.analysis.attacks import join_words, split_words

ATTACK_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("method", pa.string()),
        ("label", pa.int32()),
        ("text", pa.string()),
        ("text_pair", pa.string()),
        ("perturbed_text", pa.string()),
        ("prediction_before", pa.string()),
        ("prediction_after", pa.string()),
        ("correct_before", pa.bool_()),
        ("correct_after", pa.bool_()),
        ("status", pa.string()),
        ("queries", pa.int32()),
        ("changed_words", pa.list_(pa.int32())),
        ("similarity", pa.float64()),  # word-swap: the sentence similarity of perturbed and original text
        # QA attacks (engine.evaluation.qa_attacks): text is the context (the attacked field), text_pair the
        # question; the gold answers before and after the attack (JSON [{"text", "answer_start"}], offsets into
        # text and perturbed_text), F1 before and after (correct_* are EM), and why an example was not attacked
        ("answers", pa.string()),
        ("perturbed_answers", pa.string()),
        ("f1_before", pa.float64()),
        ("f1_after", pa.float64()),
        ("reason", pa.string()),
    ]
)

KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _neighbours() -> dict[str, str]:
    """The keys around each letter on a (staggered) QWERTY keyboard: left and right, the two above, the two below."""
    out = {}
    for r, row in enumerate(KEYBOARD):
        for i, c in enumerate(row):
            near = [row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)]
            if r > 0:
                near += [KEYBOARD[r - 1][j] for j in (i, i + 1) if j < len(KEYBOARD[r - 1])]
            if r + 1 < len(KEYBOARD):
                near += [KEYBOARD[r + 1][j] for j in (i - 1, i) if 0 <= j < len(KEYBOARD[r + 1])]
            out[c] = "".join(near)
    return out


NEIGHBOUR_KEYS = _neighbours()


# ---- the model as a victim ---------------------------------------------------------------------------------


class Victim:
    """Scores texts with the run's model (eval mode, no gradients, batched) and counts the queries."""

    def __init__(self, model: Any, adapter: Any, batch_size: int) -> None:
        self.model, self.adapter, self.batch_size = model, adapter, max(1, batch_size)
        self.device = next(model.parameters()).device
        self.queries = 0

    @torch.no_grad()
    def probs(self, texts: Sequence[str], pair: str | None, label: int) -> np.ndarray:
        """Class probabilities [len(texts), classes]; each text is one query."""
        out = []
        for i in range(0, len(texts), self.batch_size):
            chunk = list(texts[i : i + self.batch_size])
            table = pa.table(
                {
                    "example_id": [str(j) for j in range(len(chunk))],
                    "text": chunk,
                    "text_pair": [pair] * len(chunk),
                    "label": [label] * len(chunk),
                },
                schema=pa.schema(
                    [
                        ("example_id", pa.string()),
                        ("text", pa.string()),
                        ("text_pair", pa.string()),
                        ("label", pa.int32()),
                    ]
                ),
            )
            batch = self.adapter.collate(self.adapter.encode(table)).to(self.device)
            logits = self.adapter.forward(self.model, batch)["logits"]
            out.append(logits.float().softmax(-1).cpu().numpy())
            self.queries += len(chunk)
        return np.concatenate(out) if out else np.zeros((0, len(self.adapter.label_names)))


@dataclass
class Example:
    example_id: str
    text: str
    text_pair: str | None
    label: int


def result_row(
    ex: Example,
    method: str,
    label_names: list[str],
    pred_before: int,
    pred_after: int,
    perturbed: str,
    queries: int,
    changed: list[int],
    similarity: float | None = None,
) -> dict[str, Any]:
    correct_before, correct_after = pred_before == ex.label, pred_after == ex.label
    status = "skipped" if not correct_before else ("failed" if correct_after else "succeeded")
    return {
        "example_id": ex.example_id,
        "method": method,
        "label": ex.label,
        "text": ex.text,
        "text_pair": ex.text_pair,
        "perturbed_text": perturbed,
        "prediction_before": label_names[pred_before],
        "prediction_after": label_names[pred_after],
        "correct_before": correct_before,
        "correct_after": correct_after,
        "status": status,
        "queries": queries,
        "changed_words": sorted(changed),
        "similarity": similarity,
    }


# ---- char-swap ---------------------------------------------------------------------------------------------


def example_rng(seed: int, example_id: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(example_id.encode())])


def char_bugs(word: str, rng: np.random.Generator) -> list[str]:
    """TextBugger's character bugs of one word (letters stay letters, so a bug is still one word): swap two
    adjacent letters, delete a letter, insert a letter, substitute a neighbouring key. Interior positions when
    the word is long enough (first and last letters kept, as TextBugger does); distinct, never the word itself."""
    n = len(word)
    lo, hi = (1, n - 1) if n >= 4 else (0, n)  # the positions a bug may touch: [lo, hi)
    out: list[str] = []
    if hi - lo >= 2:  # swap positions i, i + 1
        i = int(rng.integers(lo, hi - 1))
        out.append(word[:i] + word[i + 1] + word[i] + word[i + 2 :])
    if n >= 2:
        i = int(rng.integers(lo, hi))
        out.append(word[:i] + word[i + 1 :])
    i = int(rng.integers(1, n)) if n >= 2 else int(rng.integers(0, 2))  # between two letters
    letter = LETTERS[int(rng.integers(len(LETTERS)))]
    out.append(word[:i] + (letter.upper() if word[max(i - 1, 0)].isupper() else letter) + word[i:])
    subs = [i for i in range(lo, hi) if word[i].lower() in NEIGHBOUR_KEYS]
    if subs:
        i = subs[int(rng.integers(len(subs)))]
        keys = NEIGHBOUR_KEYS[word[i].lower()]
        key = keys[int(rng.integers(len(keys)))]
        out.append(word[:i] + (key.upper() if word[i].isupper() else key) + word[i + 1 :])
    return [w for w in dict.fromkeys(out) if w and w != word]


def attackable(word: str) -> bool:
    return len(word) >= 2 and word.isascii() and word.isalpha()


def char_swap(
    victim: Victim,
    ex: Example,
    label_names: list[str],
    *,
    max_queries: int,
    seed: int,
    max_change: float = 1.0,
) -> dict[str, Any]:
    """The TextBugger-style greedy attack on one example (see the module's docstring)."""
    start = victim.queries
    probs0 = victim.probs([ex.text], ex.text_pair, ex.label)[0]
    pred0 = int(probs0.argmax())
    if pred0 != ex.label or max_queries <= 1:
        return result_row(ex, "char-swap", label_names, pred0, pred0, ex.text, victim.queries - start, [])
    rng = example_rng(seed, ex.example_id)
    parts = split_words(ex.text)
    words = parts[1::2]
    candidates = [i for i, w in enumerate(words) if attackable(w)]

    def left() -> int:
        return max_queries - (victim.queries - start)

    # importance by deletion: the drop of the gold probability with the word removed
    candidates = candidates[: left()]
    if candidates:
        deleted = victim.probs([join_words(parts, {i: ""}) for i in candidates], ex.text_pair, ex.label)
        drop = probs0[ex.label] - deleted[:, ex.label]
        order = [candidates[j] for j in np.argsort(-drop, kind="stable")]
    else:
        order = []
    current: dict[int, str] = {}
    gold, pred = float(probs0[ex.label]), pred0
    most = max(1, int(max_change * len(words)))  # words changed at most
    for pos in order:
        if left() <= 0 or len(current) >= most:
            break
        bugs = char_bugs(words[pos], rng)[: left()]
        if not bugs:
            continue
        texts = [join_words(parts, {**current, pos: b}) for b in bugs]
        probs = victim.probs(texts, ex.text_pair, ex.label)
        preds = probs.argmax(-1)
        golds = probs[:, ex.label]
        flipped = np.nonzero(preds != ex.label)[0]
        if len(flipped):
            best = int(flipped[np.argmin(golds[flipped])])
            current[pos] = bugs[best]
            gold, pred = float(golds[best]), int(preds[best])
            break
        best = int(np.argmin(golds))
        if golds[best] < gold:
            current[pos] = bugs[best]
            gold, pred = float(golds[best]), int(preds[best])
    return result_row(
        ex,
        "char-swap",
        label_names,
        pred0,
        pred,
        join_words(parts, current),
        victim.queries - start,
        list(current),
    )


# ---- word-swap ---------------------------------------------------------------------------------------------


@dataclass
class WordSwapTools:
    """What word-swap draws its substitutes and its constraint from (engine.evaluation.synonyms)."""

    wordnet: Any  # synonyms.WordNet, or None when its files are not installed
    neighbours: Any  # synonyms.EmbeddingNeighbours of the run's encoder
    encoder: Any  # synonyms.SentenceEncoder
    min_similarity: float = 0.8
    n_neighbours: int = 15
    min_cos: float = 0.5
    max_candidates: int = 25


def substitutes(word: str, tools: WordSwapTools) -> list[str]:
    """WordNet synonyms, then embedding neighbours; letters only, no stop words, no WordNet antonyms (embedding
    neighbours are often antonyms: worst / best); part of speech: a candidate that WordNet knows must share a part
    of speech with the word when WordNet knows the word."""
    from engine.evaluation.synonyms import STOP_WORDS

    lower = word.lower()
    found = list(tools.wordnet.synonyms(lower)) if tools.wordnet is not None else []
    found += tools.neighbours.neighbours(lower, tools.n_neighbours, tools.min_cos)
    pos = tools.wordnet.pos_of(lower) if tools.wordnet is not None else set()
    antonyms = tools.wordnet.antonyms(lower) if tools.wordnet is not None else set()
    out = []
    for cand in dict.fromkeys(found):
        if cand == lower or cand in STOP_WORDS or cand in antonyms or not (cand.isascii() and cand.isalpha()):
            continue
        cand_pos = tools.wordnet.pos_of(cand) if tools.wordnet is not None else set()
        if pos and cand_pos and not (pos & cand_pos):
            continue
        out.append(cand.capitalize() if word[:1].isupper() else cand)
    return out[: tools.max_candidates]


def word_swap(
    victim: Victim,
    ex: Example,
    label_names: list[str],
    tools: WordSwapTools,
    *,
    max_queries: int,
    max_change: float,
) -> dict[str, Any]:
    """TextFooler-style greedy substitution on one example: word importance by deletion, then most important
    word first, its substitutes that keep the sentence similarity with the original at or above
    `min_similarity` (checked on the whole text with the substitution, before the model is asked), scored in
    one batch; stop at the first flip (the most similar flipping text), else keep the substitute that lowered
    the gold probability most; at most `max_change` of the words (at least one) change."""
    from engine.evaluation.synonyms import STOP_WORDS

    start = victim.queries
    probs0 = victim.probs([ex.text], ex.text_pair, ex.label)[0]
    pred0 = int(probs0.argmax())
    if pred0 != ex.label or max_queries <= 1:
        return result_row(ex, "word-swap", label_names, pred0, pred0, ex.text, victim.queries - start, [])
    parts = split_words(ex.text)
    words = parts[1::2]

    def left() -> int:
        return max_queries - (victim.queries - start)

    candidates = [i for i, w in enumerate(words) if attackable(w) and w.lower() not in STOP_WORDS][: left()]
    order: list[int] = []
    if candidates:
        deleted = victim.probs([join_words(parts, {i: ""}) for i in candidates], ex.text_pair, ex.label)
        drop = probs0[ex.label] - deleted[:, ex.label]
        order = [candidates[j] for j in np.argsort(-drop, kind="stable")]
    current: dict[int, str] = {}
    gold, pred, similarity = float(probs0[ex.label]), pred0, 1.0
    most = max(1, int(max_change * len(words)))
    for pos in order:
        if left() <= 0 or len(current) >= most:
            break
        subs = substitutes(words[pos], tools)
        if not subs:
            continue
        texts = [join_words(parts, {**current, pos: w}) for w in subs]
        sims = tools.encoder.similarity(ex.text, texts)
        keep = [j for j in range(len(subs)) if sims[j] >= tools.min_similarity][: left()]
        if not keep:
            continue
        probs = victim.probs([texts[j] for j in keep], ex.text_pair, ex.label)
        preds, golds = probs.argmax(-1), probs[:, ex.label]
        flipped = np.nonzero(preds != ex.label)[0]
        if len(flipped):
            best = int(flipped[np.argmax([sims[keep[f]] for f in flipped])])
        elif golds.min() < gold:
            best = int(np.argmin(golds))
        else:
            continue
        current[pos] = subs[keep[best]]
        gold, pred, similarity = float(golds[best]), int(preds[best]), float(sims[keep[best]])
        if len(flipped):
            break
    return result_row(
        ex,
        "word-swap",
        label_names,
        pred0,
        pred,
        join_words(parts, current),
        victim.queries - start,
        list(current),
        similarity if current else None,
    )


# ---- pgd ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PGDAttack:
    """K steps of size eta from a zero perturbation, projected into the L2 ball of radius `budget` (Frobenius
    norm of the whole sequence's perturbation, per example)."""

    steps: int = 8
    budget: float = 0.5
    step_size: float | None = None  # default 2.5 * budget / steps (Madry et al.)

    @property
    def eta(self) -> float:
        return self.step_size if self.step_size else 2.5 * self.budget / max(1, self.steps)

    @property
    def queries(self) -> int:
        return self.steps + 2  # the clean pass, one per step, the final pass


def pgd_attacked(model: Any, adapter: Any, batch: Any, attack: PGDAttack) -> Any:
    """The forward output (`ForwardOut`) of one batch at the end of the attack; the one place that calls the
    training package's PGD (`engine.training.adversarial.pgd_batch`), with a zero start and the budget as
    its projection radius."""
    from engine.training.adversarial import PGDSettings, frozen, pgd_batch

    settings = PGDSettings(steps=attack.steps, step_size=attack.eta, init_norm=0.0, radius=attack.budget)
    hidden = int(model.get_input_embeddings().embedding_dim)
    start = torch.zeros((batch.n_units, batch.tensors["input_ids"].shape[1], hidden), dtype=torch.float32)
    with frozen(model):
        return pgd_batch(model, adapter, batch, start, settings).out


def pgd(
    model: Any, adapter: Any, examples: list[Example], label_names: list[str], attack: PGDAttack
) -> list[dict[str, Any]]:
    """The PGD attack on a batch of examples: one row each (no text output)."""
    device = next(model.parameters()).device
    table = pa.table(
        {
            "example_id": [e.example_id for e in examples],
            "text": [e.text for e in examples],
            "text_pair": [e.text_pair for e in examples],
            "label": pa.array([e.label for e in examples], pa.int32()),
        }
    )
    batch = adapter.collate(adapter.encode(table)).to(device)
    model.eval()
    with torch.no_grad():
        before = adapter.forward(model, batch)["logits"].argmax(-1).tolist()
    after = pgd_attacked(model, adapter, batch, attack).logits["logits"].argmax(-1).tolist()
    rows = []
    for ex, b, a in zip(examples, before, after):
        if b != ex.label:  # wrong already: not attacked
            rows.append(result_row(ex, "pgd", label_names, b, b, ex.text, 1, []))
        else:
            rows.append(result_row(ex, "pgd", label_names, b, a, ex.text, attack.queries, []))
    return rows


def summarise(rows: dict[str, list[Any]]) -> dict[str, Any]:
    """Clean accuracy, Aua%, success rate and #Query from the result rows (what sync stores and tests recount).

    clean_accuracy / aua: the share of all examples correct before / after; success_rate: succeeded over
    attacked (correct before); avg_queries: mean queries over attacked examples. Percentages as fractions."""
    n = len(rows.get("example_id", []))
    before = [bool(x) for x in rows.get("correct_before", [])]
    after = [bool(x) for x in rows.get("correct_after", [])]
    attacked = [i for i in range(n) if before[i]]
    succeeded = sum(1 for i in attacked if rows["status"][i] == "succeeded")
    queries = [int(rows["queries"][i]) for i in attacked]
    return {
        "n_examples": n,
        "n_attacked": len(attacked),
        "n_succeeded": succeeded,
        "clean_accuracy": sum(before) / n if n else None,
        "aua": sum(after) / n if n else None,
        "success_rate": succeeded / len(attacked) if attacked else None,
        "avg_queries": sum(queries) / len(queries) if queries else None,
    }
