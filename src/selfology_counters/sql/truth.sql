## The one definition of what a counter counts: the answers whose `source` column equals the
## counter row's `key` (model.py). The consistency view (check), repair, the install-time
## recount and the exact-read functions all render it; nothing else counts answers for a
## counter. In deferred mode the stored value holds the answers below the horizon (folded);
## the rest are pending, and stored + pending is the truth at any moment.
<%def name="horizon()">(SELECT horizon FROM ${schema}.${model.MODE_TABLE})</%def>
<%def name="answers_of(counter, row)">(SELECT count(*) FROM ${schema}.${model.ANSWERS} a WHERE a.${counter.source} = ${row}.${counter.key})</%def>
<%def name="folded_of(counter, row)">(SELECT count(*) FROM ${schema}.${model.ANSWERS} a WHERE a.${counter.source} = ${row}.${counter.key} AND a.${model.XID} < ${horizon()})</%def>
<%def name="pending_of(counter, key)">(SELECT count(*) FROM ${schema}.${model.ANSWERS} a WHERE a.${counter.source} = ${key} AND a.${model.XID} >= ${horizon()})</%def>
