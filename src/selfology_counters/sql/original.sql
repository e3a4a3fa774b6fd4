## Removing a counter trigger of the original system (original.py) that was found next to ours.
## Printed by `check` and `stats` for the operator to run; names come from original.TRIGGERS
## (checked to be plain identifiers there), the schema through sqlfiles.quote_ident. Migration
## 008's three triggers share one function: removing any of them removes all three, then it.
<%! from selfology_counters import original %>
% for t in original.TRIGGERS:
-- name: remove_${t.name} --
%   for other in original.TRIGGERS:
%     if other.function == t.function:
DROP TRIGGER IF EXISTS ${other.name} ON ${schema}.${other.table};
%     endif
%   endfor
DROP FUNCTION IF EXISTS ${schema}.${t.function}();
% endfor
