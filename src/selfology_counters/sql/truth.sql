## The one definition of what a counter counts: the answers whose `source` column equals the
## counter row's `key` (model.py). The consistency view (check), repair, the install-time
## recount and the exact-read functions all render it; nothing else counts answers for a
## counter. In deferred mode the stored value holds the answers below the horizon (folded);
## the rest are pending, and stored + pending is the truth at any moment.
## Distributed (Citus): a session's answers are also named by the session's user, the shard
## key, so that Citus can send the count to the session's shard instead of refusing it.
<%def name="same_user(counter, user)">${f" AND a.{model.SHARD_KEY} = {user}" if context.get("distributed", False) and user is not None and counter.source != model.SHARD_KEY else ""}</%def>
<%def name="horizon()">(SELECT horizon FROM ${schema}.${model.MODE_TABLE})</%def>
<%def name="answers_of(counter, row)">(SELECT count(*) FROM ${schema}.${model.ANSWERS} a WHERE a.${counter.source} = ${row}.${counter.key}${same_user(counter, f"{row}.{model.SHARD_KEY}")})</%def>
<%def name="folded_of(counter, row)">(SELECT count(*) FROM ${schema}.${model.ANSWERS} a WHERE a.${counter.source} = ${row}.${counter.key}${same_user(counter, f"{row}.{model.SHARD_KEY}")} AND a.${model.XID} < ${horizon()})</%def>
<%def name="pending_of(counter, key, user=None)">(SELECT count(*) FROM ${schema}.${model.ANSWERS} a WHERE a.${counter.source} = ${key}${same_user(counter, user)} AND a.${model.XID} >= ${horizon()})</%def>
## The exact value of a counter in either mode, in one snapshot: the stored value (0 for a
## counter row the answers create and that does not exist yet; NULL for one they don't) plus
## the pending answers (none in immediate mode: the horizon is past every xid).
<%def name="exact_of(counter, key)">${"COALESCE(" if counter.created_by_answers else "("}(SELECT t.${counter.column} FROM ${schema}.${counter.table} t WHERE t.${counter.key} = ${key})${", 0)" if counter.created_by_answers else ")"}
         + ${pending_of(counter, key)}</%def>
