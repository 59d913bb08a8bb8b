"""The registry of job kinds. Adding a kind is one module (its `JobKind`) plus one entry here; nothing else in
dynascope lists kinds: the CLI, the app's form, run creation and the job process all read this mapping."""

from __future__ import annotations

from engine.errors import BadInputError
from engine.jobs.attack import ATTACK
from engine.jobs.evaluate import EVALUATE
from engine.jobs.generate import GENERATE
from engine.jobs.retrain import RETRAIN
from engine.jobs.spec import JobKind
from engine.jobs.train import TRAIN

KINDS: dict[str, JobKind] = {kind.name: kind for kind in (TRAIN, RETRAIN, EVALUATE, ATTACK, GENERATE)}


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise BadInputError(f"unknown job kind {name!r}; expected one of {', '.join(KINDS)}") from None
