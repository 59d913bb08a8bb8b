"""engine.tasks.squad_metric against the official SQuAD scorers (v1.1 and v2.0), reproduced here as the reference."""

from __future__ import annotations

import collections
import re
import string

import pytest

from engine.tasks.squad_metric import (
    aggregate,
    best_over_golds,
    exact_match,
    f1_score,
    normalize_answer,
    score_predictions,
    squad_v2_summary,
    worst_case,
)

# ---- official evaluate-v1.1.py ------------------------------------------------------------------------------


def v11_normalize_answer(s: str) -> str:
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def v11_f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = v11_normalize_answer(prediction).split()
    ground_truth_tokens = v11_normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def v11_exact_match_score(prediction: str, ground_truth: str) -> bool:
    return v11_normalize_answer(prediction) == v11_normalize_answer(ground_truth)


def v11_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):  # noqa: ANN001, ANN201
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def v11_evaluate(golds: dict[str, list[str]], predictions: dict[str, str]) -> dict[str, float]:
    f1 = exact_match = total = 0
    for qid, ground_truths in golds.items():
        total += 1
        if qid not in predictions:
            continue
        prediction = predictions[qid]
        exact_match += v11_metric_max_over_ground_truths(v11_exact_match_score, prediction, ground_truths)
        f1 += v11_metric_max_over_ground_truths(v11_f1_score, prediction, ground_truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


# ---- official evaluate-v2.0.py (the parts without no-answer probabilities) ----------------------------------


def v20_get_tokens(s: str) -> list[str]:
    if not s:
        return []
    return v11_normalize_answer(s).split()


def v20_compute_exact(a_gold: str, a_pred: str) -> int:
    return int(v11_normalize_answer(a_gold) == v11_normalize_answer(a_pred))


def v20_compute_f1(a_gold: str, a_pred: str) -> float:
    gold_toks = v20_get_tokens(a_gold)
    pred_toks = v20_get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def v20_evaluate(golds: dict[str, list[str]], predictions: dict[str, str]) -> dict[str, float]:
    exact_scores, f1_scores, has_ans = {}, {}, {}
    for qid, answers in golds.items():
        gold_answers = [a for a in answers if v11_normalize_answer(a)]
        has_ans[qid] = bool(gold_answers)
        if not gold_answers:
            gold_answers = [""]
        a_pred = predictions[qid]
        exact_scores[qid] = max(v20_compute_exact(a, a_pred) for a in gold_answers)
        f1_scores[qid] = max(v20_compute_f1(a, a_pred) for a in gold_answers)

    def make_eval_dict(qid_list: list[str]) -> dict[str, float]:
        total = len(qid_list)
        return {
            "exact": 100.0 * sum(exact_scores[k] for k in qid_list) / total,
            "f1": 100.0 * sum(f1_scores[k] for k in qid_list) / total,
            "total": total,
        }

    out = make_eval_dict(list(golds))
    for prefix, ids in (
        ("HasAns", [k for k, v in has_ans.items() if v]),
        ("NoAns", [k for k, v in has_ans.items() if not v]),
    ):
        if ids:
            for key, value in make_eval_dict(ids).items():
                out[f"{prefix}_{key}"] = value
    return out


# ---- hand-made cases ---------------------------------------------------------------------------------------

CASES_V11: dict[str, tuple[list[str], str]] = {
    # qid: (gold answers, prediction)
    "exact": (["Denver Broncos"], "Denver Broncos"),
    "case": (["Denver Broncos"], "denver BRONCOS"),
    "punctuation": (["Saint Bernadette Soubirous"], "Saint Bernadette Soubirous."),
    "inner_punct": (["1,000"], "1000"),
    "hyphen": (["well-known"], "well known"),  # the hyphen is dropped, not turned into a space
    "articles": (["the Broncos"], "Broncos"),
    "article_inside": (["a house of the rising sun"], "house of rising sun"),
    "article_prefix_word": (["another day"], "other day"),  # 'an' inside 'another' is not an article
    "whitespace": (["Santa  Clara,\n California"], "  Santa Clara California "),
    "partial": (["Levi's Stadium in Santa Clara"], "Levi's Stadium"),
    "partial_extra": (["golden anniversary"], "the golden anniversary of the game"),
    "repeated_tokens": (["one two"], "one one one two"),
    "multiple_golds": (["Denver Broncos", "Broncos", "the Denver team"], "Broncos!"),
    "multiple_golds_f1": (
        ["Carolina Panthers", "the Panthers of Carolina", "Panthers"],
        "Carolina's Panthers",
    ),
    "empty_prediction": (["Denver Broncos"], ""),
    "wrong": (["1966"], "1967"),
    "unicode": (["Zürich, Switzerland"], "zürich"),
}


@pytest.mark.parametrize("qid", sorted(CASES_V11))
def test_em_f1_per_case_equal_the_official_v11_scorer(qid: str) -> None:
    golds, prediction = CASES_V11[qid]
    em, f1 = best_over_golds(prediction, golds)
    assert em == float(v11_metric_max_over_ground_truths(v11_exact_match_score, prediction, golds))
    assert f1 == pytest.approx(v11_metric_max_over_ground_truths(v11_f1_score, prediction, golds), abs=1e-12)
    assert normalize_answer(golds[0]) == v11_normalize_answer(golds[0])


def test_the_cases_cover_partial_and_exact_scores() -> None:
    """The hand-made cases are not trivial: some are exact, some partial, some zero."""
    f1s = {qid: best_over_golds(p, g)[1] for qid, (g, p) in CASES_V11.items()}
    assert f1s["exact"] == f1s["case"] == f1s["punctuation"] == f1s["articles"] == 1.0
    assert 0 < f1s["partial"] < 1 and 0 < f1s["repeated_tokens"] < 1 and 0 < f1s["multiple_golds_f1"] < 1
    assert f1s["empty_prediction"] == f1s["wrong"] == f1s["hyphen"] == 0.0
    assert f1s["partial"] == pytest.approx(2 * (2 / 2) * (2 / 5) / (2 / 2 + 2 / 5))
    assert exact_match("The  Cat!", "cat") == 1.0 and f1_score("cat sat", "the cat") == pytest.approx(2 / 3)


def test_dataset_level_scores_equal_the_official_v11_scorer() -> None:
    golds = {qid: g for qid, (g, _) in CASES_V11.items()}
    predictions = {qid: p for qid, (_, p) in CASES_V11.items()}
    del predictions["wrong"]  # a question without a prediction scores 0 and still counts
    ours = aggregate(score_predictions(predictions, golds))
    official = v11_evaluate(golds, predictions)
    assert ours["total"] == len(golds)
    assert ours["exact"] == pytest.approx(official["exact_match"], abs=1e-9)
    assert ours["f1"] == pytest.approx(official["f1"], abs=1e-9)


def test_v20_has_ans_and_no_ans_equal_the_official_v20_scorer() -> None:
    golds = {
        "h1": ["Denver Broncos"],
        "h2": ["Santa Clara", "Santa Clara, California"],
        "h3": ["the golden anniversary"],
        "h4": ["1966"],
        "n1": [],  # unanswerable
        "n2": [],
        "n3": [],
        "n4": ["the"],  # normalises to nothing: the official script treats it as unanswerable
    }
    predictions = {
        "h1": "Broncos",
        "h2": "Santa Clara, California.",
        "h3": "",  # abstained on an answerable question
        "h4": "1966",
        "n1": "",  # correct abstention
        "n2": "Carolina Panthers",  # answered an unanswerable question
        "n3": "",
        "n4": "",
    }
    per_example = score_predictions(predictions, golds, v2=True)
    has_answer = {qid: any(normalize_answer(a) for a in answers) for qid, answers in golds.items()}
    ours = squad_v2_summary(per_example, has_answer)
    official = v20_evaluate(golds, predictions)
    assert set(official) <= set(ours)
    for key, value in official.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key
    assert ours["NoAns_total"] == 4 and ours["HasAns_total"] == 4
    assert ours["NoAns_exact"] == 75.0 and 0 < ours["HasAns_f1"] < 100


def test_worst_case_over_adversarial_variants() -> None:
    """AddSent-like: each original question has variants with a distracting sentence appended; the adversarial
    score takes, per original question, the minimum over the original and its variants."""
    golds = {
        "q1": ["Denver Broncos"],
        "q1-addsent-0": ["Denver Broncos"],
        "q1-addsent-1": ["Denver Broncos"],
        "q2": ["Santa Clara"],
        "q2-addsent-0": ["Santa Clara"],
        "q3": ["1966"],  # no adversarial variant
    }
    predictions = {
        "q1": "Denver Broncos",
        "q1-addsent-0": "Denver Broncos",
        "q1-addsent-1": "Chicago Bears",  # fooled by the distractor
        "q2": "Santa Clara",
        "q2-addsent-0": "Clara",  # partly fooled
        "q3": "1966",
    }
    orig_of = {qid: qid.split("-addsent")[0] if "-addsent" in qid else None for qid in golds}
    per_example = score_predictions(predictions, golds)
    worst = worst_case(per_example, orig_of)
    # by hand: q1 min EM 0 F1 0; q2 min EM 0, F1 of "Clara" vs "Santa Clara" = 2/3; q3 1 and 1
    assert worst["worst_total"] == 3
    assert worst["worst_exact"] == pytest.approx(100.0 * (0 + 0 + 1) / 3)
    assert worst["worst_f1"] == pytest.approx(100.0 * (0 + 2 / 3 + 1) / 3)
    # the same by the official scorer's per-question functions
    expected_f1 = []
    for orig in ("q1", "q2", "q3"):
        group = [q for q in golds if (orig_of[q] or q) == orig]
        expected_f1.append(
            min(v11_metric_max_over_ground_truths(v11_f1_score, predictions[q], golds[q]) for q in group)
        )
    assert worst["worst_f1"] == pytest.approx(100.0 * sum(expected_f1) / 3)
    # and the plain score over all six is higher than the worst case
    assert aggregate(per_example)["f1"] > worst["worst_f1"]


def test_gold_that_normalises_to_nothing_scores_as_each_official_script() -> None:
    # v1.1 keeps the gold "the" and gives EM 1 (both normalise to "") but F1 0 (no token overlap);
    # v2.0 drops it, leaving the no-answer gold "", which an empty prediction matches fully.
    assert (
        best_over_golds("the", ["the"])
        == (
            float(v11_exact_match_score("the", "the")),
            v11_f1_score("the", "the"),
        )
        == (1.0, 0.0)
    )
    assert best_over_golds("", ["the"], v2=True) == (1.0, 1.0)


def test_the_evaluation_jobs_v20_scores_equal_the_official_v20_scorer() -> None:
    """What an evaluation of a v2.0 set reports (`engine.evaluation.scoring.qa_metrics`, reading the catalog's
    answers and is_impossible columns) equals the official script on the same predictions; the real runs of both
    QA objectives are checked the same way in tests/test_qa_objectives_training.py."""
    import json

    import pyarrow as pa

    from engine.evaluation.scoring import qa_metrics

    golds = {
        "h1": ["Denver Broncos", "the Broncos"],
        "h2": ["1966"],
        "h3": ["golden anniversary"],
        "n1": [],
        "n2": [],
        "n3": [],
    }
    predictions = {
        "h1": "Broncos",
        "h2": "",
        "h3": "the golden anniversary",
        "n1": "",
        "n2": "1966",
        "n3": "the",
    }
    table = pa.table(
        {
            "example_id": list(golds),
            "answers": [json.dumps([{"text": t, "answer_start": 0} for t in g]) for g in golds.values()],
            "is_impossible": [not g for g in golds.values()],
        }
    )
    rows = {"example_id": list(predictions), "prediction": list(predictions.values())}
    ours, per_example_f1 = qa_metrics(rows, table, "v2.0")
    official = v20_evaluate(golds, predictions)
    for key, value in official.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key
    assert ours["NoAns_exact"] == pytest.approx(200 / 3)  # "the" normalises to nothing: an abstention
    assert per_example_f1 == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
