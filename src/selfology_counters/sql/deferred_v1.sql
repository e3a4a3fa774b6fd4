## Revision 0004: what deferred mode needs of the tables. Every statement is idempotent, so
## adoption runs the first block too, and a rerun after an interruption finishes the job.
<%
    A = f"{schema}.{model.ANSWERS}"
    # Built CONCURRENTLY on a live database (outside a transaction); plainly in a new schema.
    concurrently = "CONCURRENTLY " if context.get("concurrently", True) else ""
%>
-- name: columns --
-- The writing transaction's id on every answer. A constant default first, so that adding the
-- column rewrites nothing (old answers get 0: below every horizon, counted already); then
-- the real default, which only new rows see.
ALTER TABLE ${A} ADD COLUMN IF NOT EXISTS ${model.XID} bigint NOT NULL DEFAULT 0;
ALTER TABLE ${A} ALTER COLUMN ${model.XID} SET DEFAULT (pg_current_xact_id()::text)::bigint;
CREATE TABLE IF NOT EXISTS ${schema}.${model.MODE_TABLE} (
    singleton      boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    mode           text        NOT NULL DEFAULT '${model.IMMEDIATE}'
                               CHECK (mode IN (${", ".join(f"'{m}'" for m in model.MODES)})),
    horizon        bigint      NOT NULL DEFAULT ${model.HORIZON_IMMEDIATE},
    switched_at    timestamptz NOT NULL DEFAULT now(),
    last_fold_at   timestamptz,
    last_fold_rows bigint
);
INSERT INTO ${schema}.${model.MODE_TABLE} DEFAULT VALUES ON CONFLICT DO NOTHING;

-- name: index_user_xid --
-- An exact read counts a key's answers at or above the horizon: these serve it, and every
-- lookup by user or session that the single-column indexes served.
CREATE INDEX ${concurrently}IF NOT EXISTS user_answers_new_user_id_xid_idx
    ON ${A} (user_id, ${model.XID})

-- name: index_session_xid --
CREATE INDEX ${concurrently}IF NOT EXISTS user_answers_new_session_id_xid_idx
    ON ${A} (session_id, ${model.XID})

-- name: index_xid --
-- The fold reads the answers between two horizons: xids grow with the table, so a BRIN index
-- finds them for almost nothing per insert.
CREATE INDEX ${concurrently}IF NOT EXISTS user_answers_new_xid_brin
    ON ${A} USING brin (${model.XID}) WITH (autosummarize = on)

-- name: drop_user_index --
DROP INDEX ${concurrently}IF EXISTS ${schema}.user_answers_new_user_id_idx

-- name: drop_session_index --
DROP INDEX ${concurrently}IF EXISTS ${schema}.user_answers_new_session_id_idx

-- name: downgrade --
DROP INDEX IF EXISTS ${schema}.user_answers_new_user_id_xid_idx,
    ${schema}.user_answers_new_session_id_xid_idx, ${schema}.user_answers_new_xid_brin;
CREATE INDEX IF NOT EXISTS user_answers_new_session_id_idx ON ${A} (session_id);
CREATE INDEX IF NOT EXISTS user_answers_new_user_id_idx ON ${A} (user_id);
DROP TABLE IF EXISTS ${schema}.${model.MODE_TABLE};
ALTER TABLE ${A} DROP COLUMN IF EXISTS ${model.XID};
