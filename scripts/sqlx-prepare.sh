#!/usr/bin/env bash
# Keeps .sqlx/ current: the query data sqlx's macros (`sqlx::query!` and
# friends, in region-core) check the SQL against when building offline.
# .cargo/config.toml sets SQLX_OFFLINE=true, so ordinary builds read
# .sqlx/ and need no database; after changing a statement or a migration,
# run this and commit .sqlx/.
#
#   scripts/sqlx-prepare.sh           # regenerate .sqlx/
#   scripts/sqlx-prepare.sh --check   # fail if .sqlx/ is not what the code needs
#
# It builds region-core online against a throw-away database of its own
# (unique name, migrated from migrations/, dropped on exit), so it is safe
# on a shared server. The server is the one in SQLX_PREPARE_ADMIN_URL,
# else TEST_DATABASE_URL, else postgres://postgres:postgres@127.0.0.1:5432/postgres;
# its role must be allowed to CREATE DATABASE. Needs psql. Builds in the
# caller's CARGO_TARGET_DIR (region-core is rebuilt there: the macros only
# run when the crate compiles).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

mode=write
case "${1:-}" in
    "") ;;
    --check) mode=check ;;
    -h | --help)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument '$1' (usage: scripts/sqlx-prepare.sh [--check])" ;;
esac
[ "$#" -le 1 ] || die "too many arguments (usage: scripts/sqlx-prepare.sh [--check])"

ensure_rust
command -v psql >/dev/null 2>&1 ||
    die "psql not found: install the PostgreSQL client (e.g. apt-get install postgresql-client)"

admin_url="${SQLX_PREPARE_ADMIN_URL:-${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}}"

# The scratch database's URL: the admin URL with its database replaced
# (any ?query is kept).
db_name="sqlx_prepare_$$_$(date +%s)_${RANDOM}"
url_base="${admin_url%%\?*}"
url_query="${admin_url#"$url_base"}"
url_rest="${url_base#*://}"
db_url="${url_base%%://*}://${url_rest%%/*}/${db_name}${url_query}"

work="$(mktemp -d "${TMPDIR:-/tmp}/sqlx-prepare.XXXXXX")"
created=0
cleanup() {
    if [ "$created" -eq 1 ]; then
        psql -X -q "$admin_url" -c "DROP DATABASE IF EXISTS \"$db_name\"" >/dev/null ||
            log "warning: could not drop the scratch database $db_name; drop it by hand"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Every package that uses the query macros.
packages=(-p region-core)

# Runs `cargo check` on them so that the macros run again: cargo does not
# notice SQLX_* changes, so their cached build is removed first.
check_packages() {
    cargo clean "${packages[@]}" --quiet &&
        cargo check "${packages[@]}" --all-targets --all-features --quiet
}

log "creating the scratch database $db_name"
psql -X -q "$admin_url" -c "CREATE DATABASE \"$db_name\"" >/dev/null
created=1
# Both schemas in one database: the shards' and the global catalog's (its
# table names differ from a shard's).
for migration in migrations/*.sql migrations-global/*.sql; do
    psql -X -q -v ON_ERROR_STOP=1 --single-transaction "$db_url" -f "$migration" >/dev/null ||
        die "migration $migration failed on the scratch database"
done

# Online: the macros describe every statement against the scratch database
# and write one query-<hash>.json each into SQLX_OFFLINE_DIR. An explicit
# SQLX_OFFLINE=false wins over the `true` of .cargo/config.toml's [env].
log "building against the scratch database"
mkdir "$work/sqlx"
(
    export SQLX_OFFLINE=false DATABASE_URL="$db_url" SQLX_OFFLINE_DIR="$work/sqlx"
    check_packages
) || die "region-core does not build against the migrated schema (see the errors above)"
compgen -G "$work/sqlx/query-*.json" >/dev/null ||
    die "the build wrote no query data to $work/sqlx"

if [ "$mode" = check ]; then
    mkdir -p .sqlx
    if ! diff -r "$work/sqlx" .sqlx >"$work/diff"; then
        cat "$work/diff" >&2
        die ".sqlx/ is out of date with the code's queries or the migrations: run scripts/sqlx-prepare.sh and commit .sqlx/"
    fi
    log ".sqlx/ is up to date ($(find .sqlx -name 'query-*.json' | wc -l) queries)"
else
    mkdir -p .sqlx
    find .sqlx -maxdepth 1 -name 'query-*.json' -delete
    cp "$work/sqlx"/query-*.json .sqlx/
    log "wrote $(find .sqlx -name 'query-*.json' | wc -l) queries to .sqlx/; commit them"
fi

# Offline, as every other build runs: no database, only .sqlx/.
log "checking that region-core builds offline from .sqlx/"
(
    unset DATABASE_URL SQLX_OFFLINE_DIR
    export SQLX_OFFLINE=true
    check_packages
) || die "region-core does not build offline from .sqlx/"
log "ok"
