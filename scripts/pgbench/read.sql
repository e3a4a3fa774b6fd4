-- The exact read as the public function answers it (stored + pending): what the bot's own
-- code and a dashboard call. The DAO runs the function's expression as a prepared statement
-- instead (pgbench.sh renders it from the package into a script of its own: dao_read).
\set u random(1, :users)
SELECT selfology.answers_of_user(:u);
