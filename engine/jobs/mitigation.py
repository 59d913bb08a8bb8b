"""Mitigation training, launcher side: which examples a `--mitigation` run regularises.

    dynascope train DATASET --mitigation flooding|label-smoothing --mitigation-from RUN [--mitigation-fraction P]

Zheng et al. (seed 003, section 4.2) regularise the p% *most robust* training examples (lowest sensitivity, the mean
adversarial loss of the earlier run's adversarial dynamics: `engine.analysis.regions.RANKING["robust"]`) with
Flooding or label smoothing, and train the others with the plain loss. The launcher (which may read the catalog)
ranks the source run's examples once, keeps those this run trains on, and writes their ids into the run folder
(`engine.training.objectives.MITIGATED_IDS`, with each one's sensitivity); config.json says how they were chosen
(`mitigated`). The job process reads the ids from its folder (`objectives.for_run`) and never opens the catalog.

The fraction is of the source run's ranked examples (the paper's "p% most robust instances in the original
dataset"); training examples the source run never saw get the plain loss.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from engine.analysis.regions import RANKING, selection_size, top_fraction_sql
from engine.analysis.selection import require_metrics, run_info
from engine.errors import BadInputError
from engine.training.config import TrainConfig
from engine.training.objectives import MITIGATED_IDS
from storage.sync import sync
from storage.workspace import Workspace

REGION = "robust"  # the examples a mitigation regularises: lowest sensitivity first
DEFAULT_FRACTION: float = TrainConfig.__dataclass_fields__["mitigation_fraction"].default  # type: ignore[assignment]


def check_request(cfg: dict[str, Any], given: dict[str, Any] | None = None) -> None:
    """Refuse settings that cannot work, before the catalog is opened (and before torch is imported). `given`:
    what the user typed (a retrain's `cfg` also holds what it inherits)."""
    given = cfg if given is None else given
    mitigation = cfg.get("mitigation") or "none"
    if mitigation == "none":
        stray = ["--mitigation-from"] if cfg.get("mitigation_from") else []
        # a fraction other than the default (the app's form sends every field, defaults included)
        fraction = given.get("mitigation_fraction")
        stray += ["--mitigation-fraction"] if fraction is not None and fraction != DEFAULT_FRACTION else []
        if stray:
            raise BadInputError(
                f"{' and '.join(stray)} {'choose' if len(stray) > 1 else 'chooses'} the examples a mitigation "
                "regularises, but no --mitigation is given; add --mitigation flooding or --mitigation label-smoothing"
            )
        return
    if not cfg.get("mitigation_from"):
        raise BadInputError(
            f"--mitigation {mitigation} needs --mitigation-from RUN: a run trained with --adversarial-dynamics, "
            "whose most robust examples are regularised"
        )
    objective = cfg.get("objective") or "cross_entropy"
    if objective != "cross_entropy":
        raise BadInputError(
            f"--mitigation {mitigation} regularises the plain cross-entropy of the chosen examples, but "
            f"--objective {objective} already changes every example's loss; leave --objective at cross_entropy"
        )


def describe(config: dict[str, Any]) -> str | None:
    """A run's mitigation in a line (the job's log), from config.json; None without one."""
    m = config.get("mitigated")
    if not m:
        return None
    param = (
        f"b {config.get('flood_level')}"
        if m["mitigation"] == "flooding"
        else f"alpha {config.get('smoothing')}"
    )
    return (
        f"mitigation: {m['mitigation']} ({param}) on {m['n_in_training']} of {m['n_training']} training examples, "
        f"the {m['fraction'] * 100:.3g}% most robust of run {m['from']} (sensitivity <= {m['max_sensitivity']:.4g}); "
        "plain loss on the others"
    )


def for_retrain(inherited: dict[str, Any], given: dict[str, Any], source_run: str) -> dict[str, Any]:
    """A retrain's inherited settings with its mitigation sorted out: `--mitigation none` drops an inherited
    source run; a mitigation with no source of its own regularises the robust examples of the retrain's source
    run. Checked like a train's (BadInputError before anything is written)."""
    out = dict(inherited)
    if given.get("mitigation") == "none" and "mitigation_from" not in given:
        out.pop("mitigation_from", None)
    effective = out | {k: v for k, v in given.items() if k.startswith("mitigation")}
    if (effective.get("mitigation") or "none") != "none" and not effective.get("mitigation_from"):
        out["mitigation_from"] = effective["mitigation_from"] = source_run
    check_request(effective, given)
    return out


def source_info(ws: Workspace, con: duckdb.DuckDBPyConnection, source: str) -> dict[str, Any]:
    """The source run's catalog row (`engine.analysis.selection.run_info`), refused unless it has adversarial
    records to rank by. Syncs first, so a run that just finished counts."""
    flag = f"--mitigation-from {source}"
    sync(ws, con)
    try:
        info = run_info(con, source)
        require_metrics(info)
    except BadInputError as exc:
        raise BadInputError(f"{flag}: {exc}") from None
    if not info["n_adversarial"]:
        raise BadInputError(
            f"{flag}: run '{source}' recorded no adversarial dynamics, so it has no sensitivity to rank its "
            f"examples by; train one with `dynascope train {info['dataset']} --adversarial-dynamics ...` and "
            "give that run to --mitigation-from"
        )
    return info


def resolve(
    ws: Workspace, con: duckdb.DuckDBPyConnection, cfg: dict[str, Any], train: pa.Table
) -> tuple[pa.Table, dict[str, Any]] | None:
    """The examples of `train` among the `mitigation_fraction` most robust of the source run (ids and their
    sensitivity, most robust first) and the summary for config.json; None without a mitigation."""
    mitigation = cfg.get("mitigation") or "none"
    if mitigation == "none":
        return None
    source = str(cfg["mitigation_from"])
    fraction = float(cfg.get("mitigation_fraction") or DEFAULT_FRACTION)
    flag = f"--mitigation-from {source}"
    info = source_info(ws, con, source)
    metric, order = RANKING[REGION]
    ranked = (
        f"WITH ranked_source AS (SELECT example_id, {metric} FROM example_metrics "
        f"WHERE run_id = ? AND {metric} IS NOT NULL) "
    )
    n = info["n_adversarial"]
    k = selection_size(fraction, n)
    # on a cursor of its own: the catalog session may hold an unfinished result (a fetchone), and a cursor
    # also keeps the registered ids out of the session
    cur = con.cursor()
    try:
        cur.register("mitigation_training_ids", train.select(["example_id"]))
        chosen = cur.sql(
            f"""{ranked}, picked AS ({top_fraction_sql(REGION, None, k)})
                SELECT r.example_id, r.{metric},
                       r.example_id IN (SELECT example_id FROM mitigation_training_ids) AS in_training
                FROM ranked_source r JOIN picked p USING (example_id)
                ORDER BY r.{metric} {order}, r.example_id""",
            params=[source],
        ).to_arrow_table()
    finally:
        cur.close()
    mitigated = chosen.filter(chosen.column("in_training")).select(["example_id", metric])
    if mitigated.num_rows == 0:
        raise BadInputError(
            f"{flag}: none of the {k} most robust examples of run '{source}' (dataset '{info['dataset']}') "
            "is among the examples this run trains on; mitigate from a run over the same examples"
        )
    summary = {
        "mitigation": mitigation,
        "from": source,
        "fraction": fraction,
        "ranking": f"{metric} {order}",
        "n_ranked": n,
        "n_selected": k,
        "n_in_training": mitigated.num_rows,
        "n_training": train.num_rows,
        "max_sensitivity": chosen.column(metric)[-1].as_py(),  # the ranking's cut
        "ids_file": MITIGATED_IDS,
    }
    return mitigated, summary
