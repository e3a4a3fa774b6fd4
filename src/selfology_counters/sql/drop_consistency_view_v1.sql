DROP VIEW IF EXISTS @schema@.counter_consistency_check;
