## One PostgreSQL: this variant's pieces. variant_citus.sql defines the same defs for Citus,
## where model.SHARD_KEY distributes every table; sqlfiles.render chooses the file, and a
## template calls them through its namespace (<%namespace name="v" file="${context['variant']}"/>),
## so that no template asks which variant it renders. Each def is named for what it means; on
## one PostgreSQL most of them are the plain statement, or nothing. Why Citus needs each piece
## is said at its def in variant_citus.sql. Defs named _like_this are this file's own helpers.
<%def name="_of(a)">${f"{a}." if a else ""}</%def>
<%def name="_horizon()">(SELECT horizon FROM ${schema}.${model.MODE_TABLE})</%def>
## A condition that keeps a statement on the shard of ``user`` (a value, or ANY (array)),
## appended to a WHERE on the rows of ``alias`` (none: the table's own columns): none here.
<%def name="same_shard(alias, user)"></%def>
## Whether answer ``a`` (an alias; none: the answers' own columns) is pending, or folded: at or
## above the horizon, or below it (deferred mode; in immediate mode the horizon is past every
## transaction id, so nothing is pending).
<%def name="is_pending(a=None)">${_of(a)}${model.XID} >= ${_horizon()}</%def>
<%def name="is_folded(a=None)">${_of(a)}${model.XID} < ${_horizon()}</%def>
