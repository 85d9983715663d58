#!/usr/bin/env bash
# Writes prometheus-rule.yaml: rules.yml wrapped as a Prometheus Operator
# PrometheusRule (its `groups:` become `spec.groups`), so the rules are
# written once. A PrometheusRule's spec is a rule file's content, so the
# wrapping is textual: a header, then rules.yml indented by two spaces.
#
#   deploy/monitoring/gen-prometheus-rule.sh           # rewrite prometheus-rule.yaml
#   deploy/monitoring/gen-prometheus-rule.sh --check   # fail if it differs from rules.yml's
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

render() {
    cat <<'HEADER'
# GENERATED from rules.yml by gen-prometheus-rule.sh: edit rules.yml, then
# run the script (scripts/monitoring-check.sh fails while they differ).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: region-core
  labels:
    app.kubernetes.io/name: region-core
    app.kubernetes.io/part-of: booking
spec:
HEADER
    # rules.yml's own comment header stays in rules.yml; from `groups:` on,
    # every line moves under spec (blank lines stay blank).
    sed -n '/^groups:/,$p' "$here/rules.yml" | sed 's/^\(.\)/  \1/'
}

case "${1:-}" in
    "")
        render >"$here/prometheus-rule.yaml"
        echo "wrote $here/prometheus-rule.yaml" >&2
        ;;
    --check)
        if ! diff -u "$here/prometheus-rule.yaml" <(render); then
            echo "prometheus-rule.yaml does not match rules.yml: run deploy/monitoring/gen-prometheus-rule.sh" >&2
            exit 1
        fi
        ;;
    *)
        echo "usage: $0 [--check]" >&2
        exit 2
        ;;
esac
