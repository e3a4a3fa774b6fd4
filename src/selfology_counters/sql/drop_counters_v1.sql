-- Downgrade of 0002: removes the v1 counter triggers and functions; counters stop moving.
DROP TRIGGER IF EXISTS selfology_counters_fill_insert_v1 ON @schema@.user_answers_new;
DROP TRIGGER IF EXISTS selfology_counters_fill_update_v1 ON @schema@.user_answers_new;
DROP TRIGGER IF EXISTS selfology_counters_insert_v1 ON @schema@.user_answers_new;
DROP TRIGGER IF EXISTS selfology_counters_delete_v1 ON @schema@.user_answers_new;
DROP TRIGGER IF EXISTS selfology_counters_update_v1 ON @schema@.user_answers_new;
DROP TRIGGER IF EXISTS selfology_counters_truncate_v1 ON @schema@.user_answers_new;
DROP TRIGGER IF EXISTS selfology_counters_init_personality_v1 ON @schema@.digital_personality;
DROP TRIGGER IF EXISTS selfology_counters_freeze_session_id_v1 ON @schema@.onboarding_sessions;
DROP FUNCTION IF EXISTS @schema@.selfology_counters_apply_v1(bigint[], integer[], bigint[], integer[]);
DROP FUNCTION IF EXISTS @schema@.selfology_counters_on_insert_v1();
DROP FUNCTION IF EXISTS @schema@.selfology_counters_on_delete_v1();
DROP FUNCTION IF EXISTS @schema@.selfology_counters_on_update_v1();
DROP FUNCTION IF EXISTS @schema@.selfology_counters_on_truncate_v1();
DROP FUNCTION IF EXISTS @schema@.selfology_counters_fill_answer_v1();
DROP FUNCTION IF EXISTS @schema@.selfology_counters_init_personality_v1();
DROP FUNCTION IF EXISTS @schema@.selfology_counters_freeze_session_id_v1();
