#!/usr/bin/env bash
# Builds the edge Worker (functions/) to WASM with the pinned toolchain:
# installs what is missing (scripts/edge-toolchain.sh), then runs
# `worker-build --release` in functions/ from an empty functions/build/.
#
#   scripts/build-edge.sh
#
# Output: functions/build/index.js (the module workerd loads), its WASM
# (functions/build/index_bg.wasm) and the shim. Prints the WASM's size and
# its gzip size; the last stdout line is `WASM_GZIP_BYTES=<n>` (also
# written to functions/build/wasm-gzip-bytes) for benchmarks to read.
# Run it as `functions/dev/serve.mjs` next (see docs/edge.md).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# EDGE_BUILD_IF_STALE=1 leaves a fresh functions/build alone (nothing it
# is built from is newer: lib.sh's edge_build_fresh, the check
# scripts/up.sh makes). wrangler.toml's [build] runs this script, so
# scripts/deploy-validate.sh's dry runs set it rather than rebuild twice.
if [ "${EDGE_BUILD_IF_STALE:-0}" = 1 ] && edge_build_fresh; then
    log "functions/build is fresh; not rebuilding (EDGE_BUILD_IF_STALE=1)"
    echo "WASM_GZIP_BYTES=$(cat "$REPO_ROOT/functions/build/wasm-gzip-bytes")"
    exit 0
fi

env_lines="$(bash "$REPO_ROOT/scripts/edge-toolchain.sh")" ||
    die "the edge toolchain could not be installed (see above)"
eval "$env_lines"
export WASM_BINDGEN_BIN WASM_OPT_BIN ESBUILD_BIN

# The Worker's own target dir: its build never waits on the workspace's
# lock while native builds run, and its size settings (below) touch no
# other artifact. Override with EDGE_TARGET_DIR.
export CARGO_TARGET_DIR="${EDGE_TARGET_DIR:-$REPO_ROOT/target/edge}"
# A Worker is downloaded and compiled on cold starts, so size matters more
# than the last percent of speed. The workspace's release profile keeps
# line tables for native backtraces; the WASM does without (set here, not
# in Cargo.toml, because profiles are workspace-wide).
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_PROFILE_RELEASE_OPT_LEVEL=s
export CARGO_PROFILE_RELEASE_LTO=true
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1

build="$REPO_ROOT/functions/build"
rm -rf "$build"
log "worker-build --release (functions/)"
started=$SECONDS
(cd "$REPO_ROOT/functions" && "$WORKER_BUILD_BIN" --release >&2) ||
    die "worker-build failed (see above)"

[ -f "$build/index.js" ] || die "worker-build produced no $build/index.js"
wasm="$(find "$build" -name '*.wasm' -print -quit)"
[ -n "$wasm" ] || die "worker-build produced no .wasm under $build"
raw=$(wc -c <"$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "$gz" >"$build/wasm-gzip-bytes"
log "built in $((SECONDS - started)) s: ${wasm#"$REPO_ROOT"/} is $raw bytes, $gz bytes gzipped"
echo "WASM_GZIP_BYTES=$gz"
