## Citus: this variant's pieces, where model.SHARD_KEY distributes every table (distributed.py)
## and the counter mode table is a reference table. variant_plain.sql defines the same defs for
## one PostgreSQL; sqlfiles.render chooses the file, and a template calls them through its
## namespace (<%namespace name="v" file="${context['variant']}"/>), so that no template asks
## which variant it renders. Each def says why Citus needs it. Defs named _like_this are this
## file's own helpers.
<%def name="_of(a)">${f"{a}." if a else ""}</%def>
## A condition that keeps a statement on the shard of ``user`` (a value, or ANY (array)),
## appended to a WHERE on the rows of ``alias`` (none: the table's own columns). A trigger
## fires on a shard, and each counter write in it must name the shard key, so that Citus
## routes it to the co-located shard on the same node; a write it cannot route is refused
## ("cannot execute a distributed query from a query on a shard"). A read or a lock that names
## it goes to one shard (one snapshot) instead of all of them.
<%def name="same_shard(alias, user)"> AND ${_of(alias)}${model.SHARD_KEY} = ${user}</%def>
## Whether answer ``a`` (an alias; none: the answers' own columns) is pending, or folded: its
## flag, model.PENDING. No order of transactions holds across nodes, so there is no horizon:
## a fold clears the flag, answer by answer, shard by shard.
<%def name="is_pending(a=None)">${_of(a)}${model.PENDING}</%def>
<%def name="is_folded(a=None)">NOT ${_of(a)}${model.PENDING}</%def>
