#!/usr/bin/env bash
# Makes sure this machine has PostgreSQL and Redis running on 127.0.0.1,
# plus the client tools the tests and benchmarks call (psql, pgbench,
# redis-server, redis-cli, redis-benchmark), then prints one status line.
#
# Idempotent: on a machine where everything already runs it installs,
# starts and changes nothing. It never stops a service. It works as root
# with no TTY (CI runs it under `bash .ci/run` with CI=true, no stdin).
#
# Debian/Ubuntu only (apt-get). Containers have no systemd, so services are
# started directly: pg_ctlcluster for Postgres, a daemonized redis-server.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
# The project's URLs all use postgres:postgres, which works whether the
# server trusts local TCP connections or asks for a password (scram).
PG_ADMIN_URL="postgres://postgres:postgres@${PG_HOST}:${PG_PORT}/postgres"

# --- 1. Install what is missing ------------------------------------------
# Decided by binaries, not by package names, so a machine that got them
# some other way is left alone.
pkgs=()
# The server (any version) lives under /usr/lib/postgresql/<ver>/bin.
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || pkgs+=(postgresql)
for tool in psql pg_isready pgbench; do
    command -v "$tool" >/dev/null 2>&1 || { pkgs+=(postgresql-client); break; }
done
# Tests start their own redis-server on a free port, so the binary is
# needed even when a Redis already answers on 6379.
command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
for tool in redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null 2>&1 || { pkgs+=(redis-tools); break; }
done
# scripts/up.sh polls /readyz with curl.
command -v curl >/dev/null 2>&1 || pkgs+=(curl)
if [ "${#pkgs[@]}" -gt 0 ]; then
    apt_install "${pkgs[@]}"
fi
# On Debian 12 pgbench ships in postgresql-client; older releases and some
# derivatives put it in postgresql-contrib.
if ! command -v pgbench >/dev/null 2>&1; then
    apt_install postgresql-contrib
fi
command -v pgbench >/dev/null 2>&1 || die "pgbench is still missing after installing postgresql-contrib"

# --- 2. PostgreSQL -------------------------------------------------------
pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1; }

# The newest installed server version, e.g. 15.
pg_version() {
    find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1 || true
}

if ! pg_ready; then
    ver="$(pg_version)"
    [ -n "$ver" ] || die "no PostgreSQL server under /usr/lib/postgresql"
    # The Debian package creates the 'main' cluster on install; a minimal
    # image configured not to (create_main_cluster = false) has none yet.
    if [ ! -d "/etc/postgresql/$ver/main" ]; then
        log "creating PostgreSQL $ver cluster 'main'"
        as_root pg_createcluster --port "$PG_PORT" "$ver" main >/dev/null
    fi
    log "starting PostgreSQL $ver"
    # --skip-systemctl-redirect: there is no systemd in containers/CI. A
    # failure here is not fatal yet ("already running" while still in crash
    # recovery, say); the wait below decides.
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start ||
        log "pg_ctlcluster start returned non-zero; waiting for the server anyway"
fi
for _ in $(seq 1 60); do
    pg_ready && break
    sleep 1
done
if ! pg_ready; then
    pg_lsclusters >&2 2>/dev/null || true
    die "PostgreSQL is not accepting connections on ${PG_HOST}:${PG_PORT} after 60 s (see /var/log/postgresql/)"
fi

# A fresh Debian install authenticates TCP with scram and the postgres role
# has no password, so the project's URL is refused. Set the password over
# the local socket (peer auth as the postgres OS user). Only done when the
# URL does not already work, so trust-auth machines are not touched.
pg_login_ok() { PGCONNECT_TIMEOUT=5 psql "$PG_ADMIN_URL" -X -q -tA -c 'SELECT 1' </dev/null >/dev/null 2>&1; }
if ! pg_login_ok; then
    log "setting the postgres role's password to 'postgres' (local development only)"
    # cd /: the postgres user cannot read root's home, and psql complains.
    (cd / && as_root su postgres -c "psql -X -q -p $PG_PORT -c \"ALTER USER postgres PASSWORD 'postgres'\"" </dev/null)
    pg_login_ok || die "cannot log in with $PG_ADMIN_URL; check pg_hba.conf (host all all 127.0.0.1/32 scram-sha-256 or trust)"
fi

# --- 3. Redis -------------------------------------------------------------
redis_ready() { [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

if ! redis_ready; then
    # Root uses the Debian package's directories; anyone else keeps the data
    # dir and log inside the repo (.run/ is git-ignored).
    if [ "$(id -u)" -eq 0 ]; then
        redis_dir=/var/lib/redis
        redis_log=/var/log/redis/ci.log
    else
        redis_dir="$REPO_ROOT/.run/redis"
        redis_log="$REPO_ROOT/.run/redis/redis.log"
    fi
    mkdir -p "$redis_dir" "$(dirname "$redis_log")"
    log "starting redis-server on ${REDIS_HOST}:${REDIS_PORT}"
    # No persistence: locks and seat maps are rebuilt from Postgres, which
    # is the source of truth. '-::1' binds IPv6 loopback only if available.
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "$redis_dir" --logfile "$redis_log"
fi
for _ in $(seq 1 30); do
    redis_ready && break
    sleep 1
done
redis_ready || die "Redis is not answering PING on ${REDIS_HOST}:${REDIS_PORT} after 30 s"

# --- 4. One line of status --------------------------------------------------
pg_server="$(psql "$PG_ADMIN_URL" -X -tA -c 'SHOW server_version' </dev/null 2>/dev/null | awk '{print $1}')"
redis_server="$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" info server 2>/dev/null |
    tr -d '\r' | awk -F: '$1 == "redis_version" {print $2}')"
echo "services: postgres ${pg_server:-?} on ${PG_HOST}:${PG_PORT}, redis ${redis_server:-?} on ${REDIS_HOST}:${REDIS_PORT}: ready"
