## The one definition of what a counter counts: the answers whose `source` column equals the
## counter row's `key` (model.py). The consistency view (check), repair and the install-time
## recount all render it; nothing else in the package counts answers for a counter.
<%def name="answers_of(counter, row)">(SELECT count(*) FROM ${schema}.${model.ANSWERS} a WHERE a.${counter.source} = ${row}.${counter.key})</%def>
