# shellcheck shell=bash
# Helpers shared by the scripts in scripts/ and by .ci/run. Sourced, never
# run: it defines functions and REPO_ROOT, and changes nothing else.

# The repository root, whatever directory the caller started in.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

log() { echo "[$(basename "$0")] $*" >&2; }
die() {
    echo "[$(basename "$0")] error: $*" >&2
    exit 1
}

# Runs a command as root: directly when we are root (CI, containers), else
# through non-interactive sudo (a developer laptop). No TTY is assumed.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@" || die "'sudo $*' failed (run this script as root, or allow passwordless sudo)"
    else
        die "need root to run '$*' (no sudo on this machine)"
    fi
}

# apt-get update runs at most once per script run, and only when something
# is actually missing, so an already-provisioned machine never touches the
# network.
_APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found; install these yourself: $*"
    if [ "$_APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
        _APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq -o Dpkg::Use-Pty=0 "$@" </dev/null
}

# Makes cargo usable: non-login shells (CI, cron) often lack ~/.cargo/bin on
# PATH, and `ring` (used for JWTs) needs a C compiler to build.
ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        PATH="$HOME/.cargo/bin:$PATH"
        export PATH
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install Rust (https://rustup.rs), then re-run"
    if ! command -v cc >/dev/null 2>&1; then
        apt_install gcc libc6-dev
    fi
}

# Adds a rustup target unless it is already installed (adding one needs the
# network; checking does not).
ensure_rust_target() {
    local target="$1"
    if command -v rustup >/dev/null 2>&1; then
        rustup target list --installed | grep -x "$target" >/dev/null ||
            rustup target add "$target"
    else
        log "rustup not found; assuming the toolchain already has $target"
    fi
}
