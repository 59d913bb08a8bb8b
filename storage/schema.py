"""Catalog schema as forward migrations: version N is applied once, in order, inside one transaction."""

from __future__ import annotations

import duckdb

# Each entry moves the schema from version N-1 to N. Never edit a released entry: append a new one.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE datasets (
            name VARCHAR PRIMARY KEY,
            task VARCHAR NOT NULL,              -- 'classification' | 'qa'
            n_examples BIGINT NOT NULL,
            source VARCHAR NOT NULL,
            format VARCHAR NOT NULL,
            label_names VARCHAR,                -- JSON list; class index -> name (classification)
            is_pair BOOLEAN NOT NULL DEFAULT FALSE,
            version VARCHAR,                    -- 'v1.1' | 'v2.0' for SQuAD files
            parent VARCHAR,                     -- dataset this one was selected from
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE examples (
            dataset VARCHAR NOT NULL,
            example_id VARCHAR NOT NULL,
            row_idx BIGINT NOT NULL,            -- position in the source, keeps the file order
            text VARCHAR NOT NULL,              -- the sentence, or the question for QA
            text_pair VARCHAR,                  -- the second sentence, or the context for QA
            label INTEGER,                      -- class index (classification); NULL when unlabeled
            label_name VARCHAR,
            answers VARCHAR,                    -- QA: JSON list of {"text", "answer_start"}
            is_impossible BOOLEAN,              -- QA v2.0: no answer in the context
            title VARCHAR,
            orig_id VARCHAR,                    -- adversarial SQuAD: the original question's id
            PRIMARY KEY (dataset, example_id)
        );
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,
            kind VARCHAR NOT NULL,
            dataset VARCHAR,
            model VARCHAR,
            status VARCHAR NOT NULL,
            epochs_done INTEGER NOT NULL DEFAULT 0,
            n_epochs INTEGER,
            config VARCHAR NOT NULL,            -- JSON copy of runs/<id>/config.json
            created_at TIMESTAMP,
            finished_at TIMESTAMP,
            metrics_epochs INTEGER NOT NULL DEFAULT 0  -- epochs folded into example_metrics
        );
        CREATE TABLE artifacts (
            path VARCHAR PRIMARY KEY,           -- relative to the workspace
            run_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,              -- 'dynamics' | 'eval'
            epoch INTEGER,
            rank INTEGER,
            eval_set VARCHAR,
            n_rows BIGINT NOT NULL,
            registered_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE example_metrics (
            run_id VARCHAR NOT NULL,
            example_id VARCHAR NOT NULL,
            epochs INTEGER NOT NULL,
            confidence DOUBLE,
            variability DOUBLE,
            correctness DOUBLE,
            forgetting INTEGER,
            never_learned BOOLEAN,
            aum DOUBLE,
            el2n DOUBLE,
            sensitivity DOUBLE,
            adv_variability DOUBLE,
            flip_rate DOUBLE,
            PRIMARY KEY (run_id, example_id)
        );
        CREATE TABLE evaluations (
            run_id VARCHAR NOT NULL,
            eval_set VARCHAR NOT NULL,
            n_examples BIGINT,
            metrics VARCHAR NOT NULL,           -- JSON: accuracy or exact/f1 (+ HasAns/NoAns, worst case)
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (run_id, eval_set)
        );
        CREATE TABLE predictions (
            run_id VARCHAR NOT NULL,
            eval_set VARCHAR NOT NULL,
            example_id VARCHAR NOT NULL,
            prediction VARCHAR,
            correct BOOLEAN,
            score DOUBLE,                        -- F1 for QA, 1/0 for classification
            PRIMARY KEY (run_id, eval_set, example_id)
        );
        CREATE TABLE annotations (
            dataset VARCHAR NOT NULL,
            example_id VARCHAR NOT NULL,
            tag VARCHAR,
            note VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE selections (
            name VARCHAR PRIMARY KEY,            -- also the name of the dataset it created
            run_id VARCHAR,
            region VARCHAR NOT NULL,
            fraction DOUBLE,
            balanced BOOLEAN,
            seed INTEGER,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE generation_provenance (
            dataset VARCHAR NOT NULL,
            example_id VARCHAR NOT NULL,
            pipeline VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            prompt_id VARCHAR,
            parent_dataset VARCHAR,
            parent_example_id VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (dataset, example_id)
        );
        """,
    ),
    (
        2,
        """
        -- example_metrics without a primary key: rows are unique by construction (one GROUP BY example_id per
        -- run), and DuckDB deletes indexed rows one by one (replacing a 1M-example run took ~20 s with the key).
        CREATE TABLE example_metrics_v2 (
            run_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, epochs INTEGER NOT NULL,
            confidence DOUBLE, variability DOUBLE, correctness DOUBLE, forgetting INTEGER, never_learned BOOLEAN,
            aum DOUBLE, el2n DOUBLE, sensitivity DOUBLE, adv_variability DOUBLE, flip_rate DOUBLE
        );
        INSERT INTO example_metrics_v2 SELECT * FROM example_metrics;
        DROP TABLE example_metrics;
        ALTER TABLE example_metrics_v2 RENAME TO example_metrics;
        """,
    ),
    (
        3,
        """
        -- an evaluation run again rewrites its files in place: the summary's mtime tells sync to re-register it
        ALTER TABLE artifacts ADD COLUMN source_mtime DOUBLE;
        """,
    ),
    (
        4,
        """
        -- a page of examples sorted by a metric is cut from example_metrics, then its rows are looked up by id:
        -- the primary key (dataset, example_id) is not used for `example_id IN (...)`, this index is (a 1M-example
        -- dataset: 67 ms -> 7 ms a page). example_metrics stays unindexed (see version 2).
        CREATE INDEX IF NOT EXISTS examples_example_id ON examples (example_id);
        """,
    ),
    (
        5,
        """
        -- a selection made with map boundaries (retrain from the map after moving them) records them, "A,B";
        -- NULL for a top-fraction ranking
        ALTER TABLE selections ADD COLUMN bounds VARCHAR;
        """,
    ),
    (
        6,
        """
        -- attack jobs (engine.jobs.attack): one summary row per attack run, and its per-example results
        CREATE TABLE attacks (
            run_id VARCHAR PRIMARY KEY,          -- the attack job's run
            source_run VARCHAR NOT NULL,         -- the trained run that was attacked
            dataset VARCHAR NOT NULL,
            method VARCHAR NOT NULL,             -- 'pgd' | 'word-swap' | 'char-swap'
            n_examples BIGINT NOT NULL,
            clean_accuracy DOUBLE,               -- Clean%: correct before the attack, over every example
            aua DOUBLE,                          -- Aua%: correct after the attack, over every example
            success_rate DOUBLE,                 -- succeeded / attacked (attacked: correct before)
            avg_queries DOUBLE,                  -- #Query: mean model queries per attacked example
            settings VARCHAR,                    -- JSON: steps, budget, max queries, seed, ...
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE attack_results (
            run_id VARCHAR NOT NULL,
            example_id VARCHAR NOT NULL,
            method VARCHAR NOT NULL,
            label INTEGER,
            text VARCHAR,                         -- the original text (the one attacked)
            text_pair VARCHAR,                    -- a pair task's second text, left as it is
            perturbed_text VARCHAR,               -- the attacked text (pgd: the original, it perturbs embeddings)
            prediction_before VARCHAR,
            prediction_after VARCHAR,
            correct_before BOOLEAN,
            correct_after BOOLEAN,
            status VARCHAR,                       -- 'skipped' (wrong before) | 'succeeded' | 'failed'
            queries INTEGER,                      -- model queries spent on this example, the clean one included
            changed_words INTEGER[],              -- positions of the changed words (engine.evaluation.attacks)
            similarity DOUBLE                     -- word-swap: sentence similarity of perturbed and original text
        );
        """,
    ),
    (
        7,
        """
        -- QA attacks (negation, entity-rename; engine.evaluation.qa_attacks): text is the context, text_pair the
        -- question; correct_before / correct_after are exact match; status adds 'wrong-before' (wrong before and
        -- after) and 'unattackable' (with its reason)
        ALTER TABLE attack_results ADD COLUMN answers VARCHAR;            -- JSON gold answers, offsets into text
        ALTER TABLE attack_results ADD COLUMN perturbed_answers VARCHAR;  -- JSON, offsets into perturbed_text
        ALTER TABLE attack_results ADD COLUMN f1_before DOUBLE;
        ALTER TABLE attack_results ADD COLUMN f1_after DOUBLE;
        ALTER TABLE attack_results ADD COLUMN reason VARCHAR;             -- why an example was not attacked
        ALTER TABLE attacks ADD COLUMN clean_f1 DOUBLE;                   -- QA: F1 on the attacked examples before
        ALTER TABLE attacks ADD COLUMN f1 DOUBLE;                         -- QA: F1 under attack
        ALTER TABLE attacks ADD COLUMN n_unattackable BIGINT;             -- QA: examples the attack could not change
        """,
    ),
    (
        8,
        """
        -- generate jobs (engine.jobs.generate): every generated example, accepted (also in `examples`) or rejected
        -- (only here, with its reason), and where it came from
        ALTER TABLE generation_provenance ADD COLUMN run_id VARCHAR;
        ALTER TABLE generation_provenance ADD COLUMN endpoint_host VARCHAR;
        ALTER TABLE generation_provenance ADD COLUMN prompt_version INTEGER;
        ALTER TABLE generation_provenance ADD COLUMN prompt_tokens INTEGER;      -- of the request that produced it
        ALTER TABLE generation_provenance ADD COLUMN completion_tokens INTEGER;
        ALTER TABLE generation_provenance ADD COLUMN cached BOOLEAN;             -- its reply came from the cache
        ALTER TABLE generation_provenance ADD COLUMN accepted BOOLEAN;
        ALTER TABLE generation_provenance ADD COLUMN reason VARCHAR;             -- why it was rejected
        ALTER TABLE generation_provenance ADD COLUMN verdicts VARCHAR;           -- JSON: each filter's verdict
        ALTER TABLE generation_provenance ADD COLUMN text VARCHAR;               -- the example as generated
        ALTER TABLE generation_provenance ADD COLUMN text_pair VARCHAR;
        ALTER TABLE generation_provenance ADD COLUMN answers VARCHAR;
        """,
    ),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)"
    )
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply every migration newer than the catalog; returns the resulting version."""
    version = current_version(con)
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"the catalog has schema version {version}, newer than this dynascope ({SCHEMA_VERSION}): upgrade dynascope"
        )
    for number, sql in MIGRATIONS:
        if number <= version:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_version VALUES (?, current_timestamp)", [number])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        version = number
    return version
