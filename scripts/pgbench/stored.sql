-- The stored column alone, as the bot reads it raw (exact in immediate mode only): one row of
-- one table, the least a read of the counters can cost, beside the exact read.
\set u random(1, :users)
SELECT total_answers_lifetime FROM selfology.user_stats WHERE user_id = :u;
