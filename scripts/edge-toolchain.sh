#!/usr/bin/env bash
# Installs the edge Worker's build and run tools, pinned, into
# ${EDGE_TOOLS_DIR:-$HOME/.cache/booking-edge}, and prints the environment
# that uses them. Idempotent: a tool already at its pinned version is left
# alone, so on a provisioned machine this touches no network.
#
#   eval "$(scripts/edge-toolchain.sh)"   # install what is missing, then export the env
#
# What it installs (see docs/edge.md):
#   - the rustup target wasm32-unknown-unknown;
#   - wasm-bindgen-cli, exactly the wasm-bindgen version in Cargo.lock
#     (cargo install, without --locked: a locked dependency of it is
#     missing from the registry), ~8 min cold on 2 cores;
#   - worker-build (cargo install), which packages the Worker;
#   - npm: miniflare (workerd, to run the Worker locally; newest allowing
#     Node 20), binaryen (wasm-opt) and esbuild, so worker-build never
#     tries to download them from GitHub.
#
# Messages go to stderr; only the `export` lines go to stdout.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WASM_BINDGEN_VERSION=0.2.130
WORKER_BUILD_VERSION=0.8.7
MINIFLARE_VERSION=4.20260426.0
BINARYEN_VERSION=132.0.0
ESBUILD_VERSION=0.25.12
NODE_MIN_MAJOR=18

TOOLS="${EDGE_TOOLS_DIR:-$HOME/.cache/booking-edge}"
CARGO_ROOT="$TOOLS/cargo"
NPM_DIR="$TOOLS/npm"
mkdir -p "$CARGO_ROOT" "$NPM_DIR"

# Two runs at once (two terminals, CI steps) must not both `cargo install`
# into the same root: the second waits for the first, then finds the tool.
exec 9>"$TOOLS/.install.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

ensure_rust
ensure_rust_target wasm32-unknown-unknown

# The CLI must match the wasm-bindgen library the Worker links exactly.
locked="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$REPO_ROOT/Cargo.lock")"
if [ -n "$locked" ] && [ "$locked" != "$WASM_BINDGEN_VERSION" ]; then
    die "Cargo.lock has wasm-bindgen $locked but this script pins $WASM_BINDGEN_VERSION: update WASM_BINDGEN_VERSION here (and docs/edge.md)"
fi

# cargo_tool NAME CRATE VERSION: installs CRATE@VERSION unless
# $CARGO_ROOT/bin/NAME --version already reports VERSION.
cargo_tool() {
    local bin="$CARGO_ROOT/bin/$1" crate="$2" version="$3"
    if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qw "$version"; then
        return
    fi
    log "installing $crate $version into $CARGO_ROOT (takes minutes the first time)"
    cargo install "$crate" --version "$version" --root "$CARGO_ROOT" ||
        die "cargo install $crate $version failed (see above)"
    "$bin" --version 2>/dev/null | grep -qw "$version" ||
        die "$bin does not report version $version after installing"
}

cargo_tool wasm-bindgen wasm-bindgen-cli "$WASM_BINDGEN_VERSION"
cargo_tool worker-build worker-build "$WORKER_BUILD_VERSION"

if ! command -v node >/dev/null 2>&1; then
    apt_install nodejs npm
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge "$NODE_MIN_MAJOR" ] ||
    die "Node $(node --version) is too old: Miniflare needs Node >= $NODE_MIN_MAJOR (install Node 20, e.g. from nodejs.org or nvm)"
command -v npm >/dev/null 2>&1 || apt_install npm

# npm_version PACKAGE: the installed version, or nothing.
npm_version() {
    local manifest="$NPM_DIR/node_modules/$1/package.json"
    [ -f "$manifest" ] && node -p "require(process.argv[1]).version" "$manifest" 2>/dev/null || true
}

cat >"$NPM_DIR/package.json.new" <<EOF
{ "name": "booking-edge-tools", "private": true, "dependencies": { "miniflare": "$MINIFLARE_VERSION", "binaryen": "$BINARYEN_VERSION", "esbuild": "$ESBUILD_VERSION" } }
EOF
mv "$NPM_DIR/package.json.new" "$NPM_DIR/package.json"
if [ "$(npm_version miniflare)" != "$MINIFLARE_VERSION" ] ||
    [ "$(npm_version binaryen)" != "$BINARYEN_VERSION" ] ||
    [ "$(npm_version esbuild)" != "$ESBUILD_VERSION" ]; then
    log "npm install miniflare@$MINIFLARE_VERSION binaryen@$BINARYEN_VERSION esbuild@$ESBUILD_VERSION into $NPM_DIR"
    (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error >&2) ||
        die "npm install failed in $NPM_DIR"
fi

WASM_OPT="$NPM_DIR/node_modules/binaryen/bin/wasm-opt"
ESBUILD="$NPM_DIR/node_modules/esbuild/bin/esbuild"
for f in "$CARGO_ROOT/bin/wasm-bindgen" "$CARGO_ROOT/bin/worker-build" "$WASM_OPT" "$ESBUILD"; do
    [ -x "$f" ] || die "expected an executable at $f"
done
log "edge toolchain ready in $TOOLS"

cat <<EOF
export EDGE_TOOLS_DIR='$TOOLS'
export EDGE_NODE_MODULES='$NPM_DIR/node_modules'
export WORKER_BUILD_BIN='$CARGO_ROOT/bin/worker-build'
export WASM_BINDGEN_BIN='$CARGO_ROOT/bin/wasm-bindgen'
export WASM_OPT_BIN='$WASM_OPT'
export ESBUILD_BIN='$ESBUILD'
EOF
