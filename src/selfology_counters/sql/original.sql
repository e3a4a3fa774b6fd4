## Removing a counter trigger of the original system (original.py) that was found next to ours.
## Printed by `check` and `stats` for the operator to run; names come from original.TRIGGERS
## (checked to be plain identifiers there), the schema through sqlfiles.quote_ident.
<%! from selfology_counters import original %>
% for t in original.TRIGGERS:
-- name: remove_${t.name} --
DROP TRIGGER IF EXISTS ${t.name} ON ${schema}.${t.table};
DROP FUNCTION IF EXISTS ${schema}.${t.function}();
% endfor
