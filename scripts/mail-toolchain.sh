#!/usr/bin/env bash
# Installs the local mail catcher (tools/mailcatcher/catcher.py, an SMTP
# server on Python's aiosmtpd that keeps each message as a file) and
# prints the environment that points at it. Idempotent: on a provisioned
# machine it touches no network.
#
#   eval "$(scripts/mail-toolchain.sh)"
#
# aiosmtpd goes, pinned, into a virtualenv under
# ${MAIL_TOOLS_DIR:-$HOME/.cache/booking-mail}. Messages go to stderr;
# only the `export` lines go to stdout.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AIOSMTPD_VERSION=1.4.6

TOOLS="${MAIL_TOOLS_DIR:-$HOME/.cache/booking-mail}"
venv="$TOOLS/venv"
mkdir -p "$TOOLS"

if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3 python3-venv >&2
fi
if [ ! -x "$venv/bin/python" ]; then
    log "python3 -m venv $venv"
    if ! python3 -m venv "$venv" >&2 2>/dev/null; then
        # Debian splits venv (and its pip) out of python3.
        rm -rf "$venv"
        apt_install python3-venv >&2
        python3 -m venv "$venv" >&2
    fi
fi
installed="$("$venv/bin/python" -c 'import aiosmtpd; print(aiosmtpd.__version__)' 2>/dev/null || true)"
if [ "$installed" != "$AIOSMTPD_VERSION" ]; then
    log "pip install aiosmtpd==$AIOSMTPD_VERSION into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION" >&2
fi

echo "export MAIL_CATCHER_PYTHON=$venv/bin/python"
echo "export MAIL_CATCHER_SCRIPT=$REPO_ROOT/tools/mailcatcher/catcher.py"
