-- Strategy "event-driven" of `selfology-counters compare` (scratch schema only, beside
-- schema_v1.sql): every answer also writes one event row in the same statement (an outbox);
-- a worker folds the events into the counters in batches and deletes them in the same
-- transaction (compare.sql, fold_events). The counters are as fresh as the worker's last batch.

CREATE TABLE ${schema}.answer_events (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id bigint      NOT NULL,
    user_id    bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
