#!/usr/bin/env bash
# Checks the deploy kit offline (docs/deploy.md), without a cluster, a
# container engine or a Cloudflare account:
#
#   1. renders every Kustomize tree with `kubectl kustomize`: each city's
#      overlay and its migrate/, the catalog, and deploy/monitoring when
#      it exists;
#   2. validates every rendered object: built-in kinds against
#      Kubernetes' own schemas (kubernetes-validate, strict), custom
#      resources (KEDA, Prometheus Operator, CloudNativePG) against their
#      CRDs' schemas in deploy/crds/ (jsonschema, strict); the examples in
#      deploy/examples/ too. A custom kind without a schema is listed as
#      SKIPPED;
#   3. checks that the cities' overlays differ only in configuration;
#   4. lints the Dockerfile (hadolint);
#   5. checks wrangler.toml's environments, then runs
#      `wrangler deploy --dry-run --env <env>` for each (builds the Worker
#      first if functions/build is missing or stale).
#
#   scripts/deploy-validate.sh              # everything
#   DEPLOY_SKIP_EDGE=1 scripts/deploy-validate.sh   # steps 1-4 only
#
# Installs only what is missing (scripts/deploy-toolchain.sh). Rendered output stays in .run/deploy/ for reading.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

WRANGLER_ENVS="staging production"
out="$REPO_ROOT/.run/deploy"
rm -rf "$out"
mkdir -p "$out"

tools="python kubectl"
[ "${DEPLOY_SKIP_EDGE:-0}" = 1 ] || tools="$tools wrangler"
# shellcheck disable=SC2086 # one word per tool set
env_lines="$(bash scripts/deploy-toolchain.sh $tools)" ||
    die "the deploy tools could not be installed (see above)"
eval "$env_lines"

# render NAME DIR: kubectl kustomize DIR > $out/NAME.yaml
rendered=()
render() {
    log "kubectl kustomize $2"
    "$KUBECTL_BIN" kustomize "$2" >"$out/$1.yaml" || die "kubectl kustomize $2 failed"
    rendered+=("$1=$out/$1.yaml")
}

cities=()
for dir in deploy/overlays/*/; do
    dir="${dir%/}"
    city="$(basename "$dir")"
    [ -f "$dir/kustomization.yaml" ] || continue
    cities+=("$city")
    render "$city" "$dir"
    [ -f "$dir/migrate/kustomization.yaml" ] || die "$dir has no migrate/ (docs/deploy.md, \"Rolling out\")"
    render "$city-migrate" "$dir/migrate"
done
[ "${#cities[@]}" -gt 0 ] || die "no overlays in deploy/overlays/"
render catalog deploy/catalog
if [ -f deploy/monitoring/kustomization.yaml ]; then
    render monitoring deploy/monitoring
else
    log "no deploy/monitoring/kustomization.yaml: nothing to render there"
fi
# The examples that are manifests (the Redis one is Helm values).
for f in deploy/examples/*.yaml; do
    grep -q '^apiVersion:' "$f" && rendered+=("examples/$(basename "$f")=$f")
done

"$DEPLOY_PYTHON" scripts/deploy-validate.py schemas "${rendered[@]}"

shapes=() migrate_shapes=()
for city in "${cities[@]}"; do
    shapes+=("$city=$out/$city.yaml")
    migrate_shapes+=("$city=$out/$city-migrate.yaml")
done
if [ "${#cities[@]}" -gt 1 ]; then
    "$DEPLOY_PYTHON" scripts/deploy-validate.py same-shape "${shapes[@]}"
    "$DEPLOY_PYTHON" scripts/deploy-validate.py same-shape "${migrate_shapes[@]}"
fi

log "hadolint Dockerfile"
"$HADOLINT_BIN" --failure-threshold warning Dockerfile
log "Dockerfile: hadolint clean"

# shellcheck disable=SC2086 # one word per environment
"$DEPLOY_PYTHON" scripts/deploy-validate.py wrangler-envs $WRANGLER_ENVS

if [ "${DEPLOY_SKIP_EDGE:-0}" = 1 ]; then
    log "DEPLOY_SKIP_EDGE=1: no wrangler dry run"
    exit 0
fi
# The Worker first, here rather than inside wrangler (whose [build] runs
# scripts/build-edge.sh too, and would hide a first build's minutes in its
# log): a fresh functions/build is left alone, so the dry runs' own
# builds are no-ops and scripts/up.sh reuses this one.
export EDGE_BUILD_IF_STALE=1
bash scripts/build-edge.sh >&2
# No telemetry, no update check, and wrangler's own files under .run/,
# not in the user's home. A dry run needs no Cloudflare login.
export WRANGLER_SEND_METRICS=false WRANGLER_HIDE_BANNER=true
export XDG_CONFIG_HOME="$out/wrangler-home"
export WRANGLER_LOG_PATH="$out/wrangler-logs"
for env in $WRANGLER_ENVS; do
    log "wrangler deploy --dry-run --env $env"
    "$WRANGLER_BIN" deploy --dry-run --env "$env" --outdir "$out/edge-$env" \
        >"$out/wrangler-$env.log" 2>&1 || {
        cat "$out/wrangler-$env.log" >&2
        die "wrangler deploy --dry-run --env $env failed"
    }
    grep -E 'Total Upload|LIVE_SHOWS|--dry-run: exiting' "$out/wrangler-$env.log" >&2 || true
done
log "deploy kit valid: overlays ${cities[*]}, their migrations, the catalog, the examples; edge environments $WRANGLER_ENVS"
