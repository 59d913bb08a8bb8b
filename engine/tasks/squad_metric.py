"""SQuAD EM / F1, mirroring the official v1.1 and v2.0 evaluation scripts (written here because
`evaluate.load("squad")` needs the hub).

Normalisation, as the official script: lower case, drop punctuation, drop the articles a / an / the, collapse
whitespace. F1 is the token-overlap F1 (Counter intersection); both take the max over the gold answers.
v2.0: an unanswerable question has the single gold answer "" and a prediction of "" scores 1.
Worst case (Jia & Liang 2017): for each original question, the minimum over the original and its
adversarial variants.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str, v2: bool = True) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if v2 and (not pred_tokens or not gold_tokens):  # v2.0: both empty is a match, one empty is not
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(prediction: str, golds: Sequence[str], v2: bool = False) -> tuple[float, float]:
    """(EM, F1) of one prediction, max over its gold answers.

    v1.1 (the default) scores against every gold as given, as the v1.1 script does (a gold that normalises to
    nothing gives F1 0). v2.0 drops golds that normalise to nothing and treats no gold as the answer ""; a
    question without golds is scored the v2.0 way in either mode.
    """
    if v2 or not golds:
        candidates = [g for g in golds if normalize_answer(g)] or [""]
        return (
            max(exact_match(prediction, g) for g in candidates),
            max(f1_score(prediction, g, v2=True) for g in candidates),
        )
    return (
        max(exact_match(prediction, g) for g in golds),
        max(f1_score(prediction, g, v2=False) for g in golds),
    )


def score_predictions(
    predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]], v2: bool = False
) -> dict[str, tuple[float, float]]:
    """Per-example (EM, F1) for every gold question; a question without a prediction scores 0."""
    return {
        qid: best_over_golds(predictions.get(qid, "\0missing"), answers, v2) for qid, answers in golds.items()
    }


def aggregate(
    per_example: Mapping[str, tuple[float, float]], ids: Iterable[str] | None = None
) -> dict[str, float]:
    """Exact match and F1 in percent (as the official script prints them) over `ids` (default: all)."""
    chosen = list(per_example) if ids is None else list(ids)
    if not chosen:
        return {"exact": 0.0, "f1": 0.0, "total": 0}
    em = sum(per_example[i][0] for i in chosen)
    f1 = sum(per_example[i][1] for i in chosen)
    return {"exact": 100.0 * em / len(chosen), "f1": 100.0 * f1 / len(chosen), "total": len(chosen)}


def squad_v2_summary(
    per_example: Mapping[str, tuple[float, float]], has_answer: Mapping[str, bool]
) -> dict[str, float]:
    """Overall, HasAns and NoAns scores, keyed as the official v2.0 script keys them."""
    summary = dict(aggregate(per_example))
    has = [i for i in per_example if has_answer.get(i, True)]
    no = [i for i in per_example if not has_answer.get(i, True)]
    for prefix, ids in (("HasAns", has), ("NoAns", no)):
        if ids:
            part = aggregate(per_example, ids)
            summary[f"{prefix}_exact"], summary[f"{prefix}_f1"], summary[f"{prefix}_total"] = (
                part["exact"],
                part["f1"],
                part["total"],
            )
    return summary


def worst_case(
    per_example: Mapping[str, tuple[float, float]], orig_of: Mapping[str, str | None]
) -> dict[str, float]:
    """Jia & Liang's adversarial score: per original question the minimum EM and F1 over the original and its
    adversarial variants, then averaged over original questions (in percent)."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for qid, scores in per_example.items():
        groups.setdefault(orig_of.get(qid) or qid, []).append(scores)
    if not groups:
        return {"worst_exact": 0.0, "worst_f1": 0.0, "worst_total": 0}
    em = sum(min(s[0] for s in group) for group in groups.values())
    f1 = sum(min(s[1] for s in group) for group in groups.values())
    n = len(groups)
    return {"worst_exact": 100.0 * em / n, "worst_f1": 100.0 * f1 / n, "worst_total": n}
