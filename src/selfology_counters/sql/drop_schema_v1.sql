-- Downgrade of 0001: removes the tables (and every answer in them).
DROP TABLE IF EXISTS ${schema}.digital_personality, ${schema}.user_stats,
    ${schema}.user_answers_new, ${schema}.onboarding_sessions;
