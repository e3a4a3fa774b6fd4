-- What marks an answer pending costs the fold: the xid horizon (single node) against a
-- per-row flag (Citus), on the same 200,000 answers of 500 users in 2,000 sessions, with
-- the indexes each design needs. The horizon's fold reads the answers between two
-- horizons; the flag's fold also rewrites every answer it folds (and its index entries).
-- Run against a scratch database (it creates and drops the table fold_markers):
--
--   psql postgresql://postgres@127.0.0.1:5432/scratch -f scripts/fold_markers.sql
\timing off
DROP TABLE IF EXISTS fold_markers;
CREATE TABLE fold_markers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id bigint NOT NULL, user_id bigint NOT NULL, raw_answer text NOT NULL,
    xid bigint NOT NULL DEFAULT (pg_current_xact_id()::text)::bigint,
    pending boolean NOT NULL DEFAULT true);
CREATE INDEX ON fold_markers (user_id, xid);
CREATE INDEX ON fold_markers (session_id, xid);
CREATE INDEX ON fold_markers USING brin (xid);
CREATE INDEX ON fold_markers (user_id) WHERE pending;
INSERT INTO fold_markers (session_id, user_id, raw_answer)
SELECT g % 2000, g % 500, 'a typical answer of about forty characters'
  FROM generate_series(1, 200000) g;
VACUUM ANALYZE fold_markers;

SELECT pg_current_wal_lsn() AS before_horizon \gset
\timing on
SELECT count(*) AS horizon_fold_groups FROM (
    SELECT session_id, user_id, count(*) FROM fold_markers
     WHERE xid >= 0 AND xid < (pg_current_xact_id()::text)::bigint
     GROUP BY GROUPING SETS ((session_id), (user_id))) g;
\timing off
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), :'before_horizon') AS horizon_fold_wal_bytes;

SELECT pg_current_wal_lsn() AS before_flag \gset
\timing on
WITH folded AS (
    UPDATE fold_markers SET pending = false WHERE pending RETURNING session_id, user_id)
SELECT count(*) AS flag_fold_groups FROM (
    SELECT session_id, user_id, count(*) FROM folded
     GROUP BY GROUPING SETS ((session_id), (user_id))) g;
\timing off
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), :'before_flag') AS flag_fold_wal_bytes;
DROP TABLE fold_markers;
