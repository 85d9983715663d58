#!/usr/bin/env bash
# Checks the monitoring kit in deploy/monitoring/ (no cluster, no running
# Prometheus needed):
#
#   1. promtool check rules   rules.yml is valid (syntax, PromQL, templates);
#   2. promtool test rules    rules_test.yml: each alert fires on synthetic
#                             series, and stays quiet where it must;
#   3. prometheus-rule.yaml   is what gen-prometheus-rule.sh makes of
#                             rules.yml (the two cannot drift);
#   4. dashboard.json         parses, has its `city` variable, and every
#                             query filters by it;
#   5. runbook_url            every alert's points at a section of
#                             docs/runbook.md.
#
# promtool comes from Debian's `prometheus` package, installed if missing
# (apt-get, once; a provisioned machine touches no network). On a machine
# with systemd the package also starts a Prometheus server on :9090
# (`systemctl disable --now prometheus` if unwanted); containers without
# an init, like CI's, only get the binaries. That every
# series the rules and the dashboard read is really exported is checked
# against a running region core by tests/tests/observability.rs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT/deploy/monitoring"

if ! command -v promtool >/dev/null 2>&1; then
    apt_install --no-install-recommends prometheus
fi
command -v promtool >/dev/null 2>&1 || die "promtool not found after installing Debian's prometheus"
command -v python3 >/dev/null 2>&1 || apt_install python3

log "promtool: $(promtool --version 2>&1 | head -n 1)"
promtool check rules rules.yml
promtool test rules rules_test.yml

log "prometheus-rule.yaml matches rules.yml"
bash gen-prometheus-rule.sh --check

log "dashboard.json"
python3 - dashboard.json <<'PY'
import json, sys
path = sys.argv[1]
with open(path) as f:
    d = json.load(f)
names = [v.get("name") for v in d.get("templating", {}).get("list", [])]
assert "city" in names, f"{path}: no `city` template variable (have {names})"
panels = [p for p in d["panels"] if p.get("type") != "row"]
assert panels, f"{path}: no panels"
for p in panels:
    for t in p.get("targets", []):
        assert t.get("expr", "").strip(), f"{path}: panel {p.get('title')!r} has an empty query"
        assert "$city" in t["expr"], f"{path}: panel {p.get('title')!r} ignores $city: {t['expr']}"
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), f"{path}: duplicate panel ids"
print(f"{path}: schemaVersion {d.get('schemaVersion')}, {len(panels)} panels, variables {names}")
PY
log "every runbook_url points at a section of docs/runbook.md"
python3 - rules.yml "$REPO_ROOT/docs/runbook.md" <<'PY'
import re, sys
rules, runbook = sys.argv[1], sys.argv[2]
def slug(heading):
    # GitHub's anchors: lower case, punctuation dropped, spaces to hyphens.
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")
with open(runbook) as f:
    anchors = {slug(l.lstrip("#")) for l in f if l.startswith("#")}
with open(rules) as f:
    urls = re.findall(r"runbook_url:\s*(\S+)", f.read())
assert urls, f"{rules}: no runbook_url"
missing = sorted({u for u in urls if "docs/runbook.md#" not in u or u.split("#", 1)[1] not in anchors})
assert not missing, f"runbook_url without a section in {runbook}: {missing}"
print(f"{len(urls)} runbook_urls, all sections of {runbook}")
PY
log "monitoring kit ok"
