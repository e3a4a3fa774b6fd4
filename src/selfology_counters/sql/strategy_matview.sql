-- Strategy "materialized view" of `selfology-counters compare` (scratch schema only, beside
-- schema_v1.sql): per-user answer counts kept in a materialized view, as fresh as its last
-- REFRESH. The unique index is what REFRESH ... CONCURRENTLY requires.

CREATE MATERIALIZED VIEW ${schema}.user_answer_totals AS
SELECT user_id, count(*) AS total_answers
  FROM ${schema}.user_answers_new
 GROUP BY user_id;

CREATE UNIQUE INDEX user_answer_totals_user_id_key ON ${schema}.user_answer_totals (user_id);
