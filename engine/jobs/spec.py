"""What a job kind is: typed fields (name, type, default, help, bounds) and the bodies that create and run it.

One `Field` is the single home of a setting's default, its help text and its bounds: the CLI options
(`engine.cli`), the app's job form (`tui_app.screens.jobs`) and run creation (`JobKind.create`) all read it.
A default may depend on the task (QA windows are longer than sentences), so `Field.default_for(task)` is the
one way to ask for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import BadInputError
from storage.workspace import Workspace

TASKS = ("classification", "qa")


def number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Field:
    """One setting of a job kind.

    type: int, float, str, bool or list (a list of strings: repeatable on the CLI, comma-separated in the form).
    default: the value when not given; a dict {task: value} when it depends on the task; None means "not set"
    (for retrain: inherit the source run's value).
    """

    name: str
    type: type
    help: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    exclusive_minimum: bool = False  # minimum itself is not allowed (a learning rate of 0)
    required: bool = False
    form: bool = True  # shown in the app's job form
    argument: bool = False  # a positional CLI argument instead of an option
    # the form shows it only while another field has one of these values, e.g. ("pipeline", ("blend",)): a
    # setting that means nothing for the other choices stays off the form (the CLI takes it, and ignores it)
    when: tuple[str, tuple[str, ...]] | None = None
    picks: str | None = None  # the form offers the workspace's "dataset"s or trained "run"s to pick from

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    def default_for(self, task: str | None = None) -> Any:
        if isinstance(self.default, dict):
            return self.default.get(task or "classification")
        return self.default

    def bounds_text(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        parts = []
        if self.minimum is not None:
            parts.append(f"{'>' if self.exclusive_minimum else '>='} {number_text(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"<= {number_text(self.maximum)}")
        return " and ".join(parts)

    def help_text(self) -> str:
        """The CLI's help: the field's help, its bounds and its default (by task when they differ)."""
        text = self.help
        bounds = self.bounds_text()
        if bounds and not self.choices:
            text += f" ({bounds})"
        if isinstance(self.default, dict):
            text += " [default: " + ", ".join(f"{v} for {k}" for k, v in self.default.items()) + "]"
        elif self.default not in (None, False, []):
            text += f" [default: {self.default}]"
        return text

    def parse(self, raw: Any) -> Any:
        """The value as its type, checked against the bounds; BadInputError names the field and the rule.
        None and "" mean "not given"."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        where = f"{self.label} ({self.flag})"
        if self.type is list:
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            values = [str(v).strip() for v in items if str(v).strip()]
            return values or None
        if self.type is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise BadInputError(f"{where}: {raw!r} is not yes or no")
        if self.type in (int, float):
            if isinstance(raw, bool):
                raise BadInputError(f"{where}: {raw!r} is not a number")
            try:
                value: Any = self.type(raw.strip() if isinstance(raw, str) else raw)
            except (TypeError, ValueError):
                kind = "a whole number" if self.type is int else "a number"
                raise BadInputError(f"{where}: {raw!r} is not {kind}") from None
            if self.type is float and not math.isfinite(value):
                raise BadInputError(f"{where}: {raw!r} is not a finite number")
            if self.type is int and isinstance(raw, float) and raw != int(raw):
                raise BadInputError(f"{where}: {raw!r} is not a whole number")
            low_fail = self.minimum is not None and (
                value <= self.minimum if self.exclusive_minimum else value < self.minimum
            )
            high_fail = self.maximum is not None and value > self.maximum
            if low_fail or high_fail:
                raise BadInputError(f"{where} must be {self.bounds_text()}, got {number_text(value)}")
            return value
        value = str(raw).strip()
        if self.choices and value not in self.choices:
            raise BadInputError(f"{where}: {value!r} is not {self.bounds_text()}")
        return value


@dataclass(frozen=True)
class JobKind:
    """One kind of job: its fields, how a run of it is created (the launcher, which may read the catalog) and
    how it runs (the detached job process, which never opens the catalog).

    command: the CLI command (default: the kind's name), generated by `engine.cli.jobs` from the fields.
    artifacts: what the job leaves in its run folder for `storage.sync` to fold into the catalog
    (`storage.artifacts.ARTIFACT_KINDS`); written into config.json so sync needs no engine import. A kind
    that records dynamics trains a model: its runs are sources for retrain and evaluate.
    resumable: a killed or cancelled run of this kind can continue (`--resume RUN`).
    inline: run in the calling process instead (the CLI without --detach), returning a JSON-able result.
    announce: a line the CLI prints once the run is created (what was selected, ...).
    preview: what the form's current values would do, in a line (the retrain form shows the selection's size
    and label mix before launch); it may read the catalog, and raises BadInputError for values it cannot use.
    """

    name: str
    help: str
    fields: tuple[Field, ...]
    create: Callable[[Workspace, dict[str, Any]], str]
    run: Callable[[Path, dict[str, Any], Any], str]
    artifacts: tuple[str, ...] = ()
    resumable: bool = True
    command: str = ""
    inline: Callable[[Workspace, dict[str, Any]], Any] | None = None
    announce: Callable[[dict[str, Any]], str] | None = None
    preview: Callable[[Workspace, dict[str, Any]], str] | None = None

    def __post_init__(self) -> None:
        from storage.artifacts import ARTIFACT_KINDS

        unknown = set(self.artifacts) - set(ARTIFACT_KINDS)
        if unknown:
            raise ValueError(
                f"job kind {self.name}: unknown artifacts {sorted(unknown)}; sync knows {ARTIFACT_KINDS}"
            )
        if not self.command:
            object.__setattr__(self, "command", self.name)

    @property
    def trains_model(self) -> bool:
        return "dynamics" in self.artifacts

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def parse(self, values: dict[str, Any]) -> dict[str, Any]:
        """The given values (CLI, form or a script), typed and checked; unset ones left out. Unknown keys are
        kept as given (callers add bookkeeping such as parent_run)."""
        known = {f.name: f for f in self.fields}
        out: dict[str, Any] = {}
        for key, raw in values.items():
            value = known[key].parse(raw) if key in known else raw
            if value is not None:
                out[key] = value
        for f in self.fields:
            if f.required and f.name not in out:
                raise BadInputError(f"a {self.name} job needs {f.label} ({f.flag})")
        return out

    def defaults(self, task: str | None = None) -> dict[str, Any]:
        return {f.name: f.default_for(task) for f in self.fields}


def fields_from_settings(config_cls: Any, names: tuple[str, ...]) -> tuple[Field, ...]:
    """Fields for the named `setting(...)`s of a config dataclass (`engine.training.config.TrainConfig`): the
    dataclass keeps each default, help text and bound; this only re-expresses them."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(config_cls)
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    out = []
    for name in names:
        f = by_name[name]
        meta = f.metadata
        if "help" not in meta:
            raise ValueError(f"{config_cls.__name__}.{name} is not a setting(...) with help and bounds")
        hint = hints[name]
        base = next((t for t in (bool, int, float, str) if t == hint or t in typing.get_args(hint)), str)
        out.append(
            Field(
                name=name,
                type=base,
                help=meta["help"],
                default=meta["by_task"] or (None if f.default is dataclasses.MISSING else f.default),
                minimum=meta["minimum"],
                maximum=meta["maximum"],
                exclusive_minimum=meta["exclusive_minimum"],
                choices=meta["choices"],
            )
        )
    return tuple(out)
