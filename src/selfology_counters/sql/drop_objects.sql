## Drops the objects it is given (objects.drop_sql: the downgrade of a revision).
% for obj in objects:
%   if obj.kind == "trigger":
DROP TRIGGER IF EXISTS ${obj.name} ON ${schema}.${obj.table};
%   elif obj.kind == "function":
DROP FUNCTION IF EXISTS ${schema}.${obj.name}(${obj.signature});
%   else:
DROP VIEW IF EXISTS ${schema}.${obj.name};
%   endif
% endfor
