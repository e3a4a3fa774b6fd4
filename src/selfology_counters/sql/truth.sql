## The one definition of what a counter counts: the answers whose `source` column equals the
## counter row's `key` (model.py). The consistency view (check), repair, the install-time
## recount and the exact-read functions all render it; nothing else counts answers for a
## counter. In deferred mode the stored value holds the answers below the horizon (folded);
## the rest are pending, and stored + pending is the truth at any moment.
## v: the variant's pieces (variant_plain.sql or variant_citus.sql, as sqlfiles.render chose).
<%namespace name="v" file="${context['variant']}"/>
## Distributed (Citus): a session's answers are also named by the session's user, the shard
## key, so that Citus can send the count to the session's shard instead of refusing it.
<%def name="same_user(counter, user)">${v.same_shard("a", user) if user is not None and counter.source != model.SHARD_KEY else ""}</%def>
<%def name="answers_of(counter, row)">(SELECT count(*) FROM ${schema}.${model.ANSWERS} a WHERE a.${counter.source} = ${row}.${counter.key}${same_user(counter, f"{row}.{model.SHARD_KEY}")})</%def>
## Whether an answer is pending or folded is the variant's (v.is_pending, v.is_folded).
<%def name="folded_of(counter, row)">(SELECT count(*) FROM ${schema}.${model.ANSWERS} a WHERE a.${counter.source} = ${row}.${counter.key}${same_user(counter, f"{row}.{model.SHARD_KEY}")} AND ${v.is_folded("a")})</%def>
<%def name="pending_of(counter, key, user=None)">(SELECT count(*) FROM ${schema}.${model.ANSWERS} a WHERE a.${counter.source} = ${key}${same_user(counter, user)} AND ${v.is_pending("a")})</%def>
## The exact value of a counter in either mode, in one snapshot: the stored value (0 for a
## counter row the answers create and that does not exist yet; NULL for one they don't) plus
## the pending answers (none in immediate mode: the horizon is past every xid).
## ``user``: the key's user, on Citus, for a counter not keyed by it (a session): both parts
## then name the shard key, so that Citus sends the whole read to one shard (one snapshot).
<%def name="exact_of(counter, key, user=None)">${"COALESCE(" if counter.created_by_answers else "("}(SELECT t.${counter.column} FROM ${schema}.${counter.table} t WHERE t.${counter.key} = ${key}${capture(same_user, counter, user).replace(" a.", " t.")})${", 0)" if counter.created_by_answers else ")"}
         + ${pending_of(counter, key, user)}</%def>
