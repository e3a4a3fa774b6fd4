-- Questions about what is installed. Schema names are bind parameters here.

-- name: answers_table --
SELECT to_regclass(quote_ident($1) || '.user_answers_new') IS NOT NULL
