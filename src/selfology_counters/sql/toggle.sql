## Turning one of the model's triggers on or off (repair, when the counter mode wants it the
## other way): rendered from the model like its definition, one statement, one round trip.
## ``obj``: the trigger (model.DbObject).

-- name: enable --
ALTER TABLE ${schema}.${obj.table} ENABLE TRIGGER ${obj.name}

-- name: disable --
ALTER TABLE ${schema}.${obj.table} DISABLE TRIGGER ${obj.name}
