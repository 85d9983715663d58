#!/usr/bin/env bash
# Installs what the browser tests need and prints the environment that
# points at it. Idempotent: on a provisioned machine it touches no network.
#
#   eval "$(scripts/browser-toolchain.sh)"
#
#   - Debian's chromium and chromium-driver (headless Chromium driven over
#     WebDriver; /usr/bin/chromium, /usr/bin/chromedriver);
#   - npm axe-core, pinned, into ${BROWSER_TOOLS_DIR:-$HOME/.cache/booking-browser}
#     (the accessibility checker the tests inject into each page).
#
# Messages go to stderr; only the `export` lines go to stdout.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AXE_CORE_VERSION=4.14.1

TOOLS="${BROWSER_TOOLS_DIR:-$HOME/.cache/booking-browser}"
mkdir -p "$TOOLS/npm"

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    apt_install chromium chromium-driver >&2
fi

axe="$TOOLS/npm/node_modules/axe-core/axe.min.js"
installed="$(node -p "require('$TOOLS/npm/node_modules/axe-core/package.json').version" 2>/dev/null || true)"
if [ ! -f "$axe" ] || [ "$installed" != "$AXE_CORE_VERSION" ]; then
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm >&2
    log "npm install axe-core@$AXE_CORE_VERSION into $TOOLS/npm"
    (cd "$TOOLS/npm" && npm install --no-audit --no-fund --silent "axe-core@$AXE_CORE_VERSION" >&2)
fi

echo "export BROWSER_CHROMIUM=$(command -v chromium)"
echo "export BROWSER_CHROMEDRIVER=$(command -v chromedriver)"
echo "export BROWSER_AXE_JS=$axe"
