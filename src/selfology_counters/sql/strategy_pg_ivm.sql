-- Strategy "pg_ivm" of `selfology-counters compare` (scratch schema only, beside
-- schema_v1.sql): the three counts as incrementally maintainable materialized views (IMMVs) of
-- the pg_ivm extension (github.com/sraoss/pg_ivm), which its triggers keep up to date in the
-- writing transaction. Needs the extension in the database (compare creates it for the run
-- when the server lets it). An IMMV is a table of its own: pg_ivm cannot keep a column of an
-- existing table, so the bot's counter columns stay at 0 here and the bot would read these.

SELECT pgivm.create_immv('${schema}.answers_per_user',
    'SELECT user_id, count(*) AS answers FROM ${schema}.user_answers_new GROUP BY user_id');

SELECT pgivm.create_immv('${schema}.answers_per_session',
    'SELECT session_id, count(*) AS answers FROM ${schema}.user_answers_new GROUP BY session_id');

-- The personality counter counts a user's answers where a digital_personality row exists: an
-- inner join. The outer join that would keep a row of 0 for a personality without answers is
-- refused ("aggregate is not supported with outer join"): such a personality has no row here.
SELECT pgivm.create_immv('${schema}.answers_per_personality',
    'SELECT p.user_id, count(*) AS answers
       FROM ${schema}.digital_personality p
       JOIN ${schema}.user_answers_new a ON a.user_id = p.user_id
      GROUP BY p.user_id');
