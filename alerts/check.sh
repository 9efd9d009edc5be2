#!/usr/bin/env bash
# Checks the alerting rules, their unit tests and the example Prometheus and Alertmanager
# configurations. Runs from any directory; exits non-zero at the first failure.
# Needs promtool (Debian: prometheus) and amtool (Debian: prometheus-alertmanager).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
alerts="$repo/alerts"
rules="$alerts/mailflow.rules.yml"
prom_cfg="$repo/deploy/prometheus/prometheus.yml"
am_cfg="$repo/deploy/alertmanager/alertmanager.yml"

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

for tool in promtool amtool; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install prometheus prometheus-alertmanager)"
done

say "promtool check rules"
promtool check rules "$alerts"/*.rules.yml

say "promtool test rules"
(cd "$alerts" && promtool test rules ./*_test.yml)

say "promtool check config (rule_files resolve relative to the config file)"
promtool check config "$prom_cfg"

say "amtool check-config"
amtool check-config "$am_cfg"

say "alert routing: critical pages, warning and unlabelled alerts become tickets"
route() { # expected receiver, labels...
  local want="$1"; shift
  amtool config routes test --config.file="$am_cfg" --verify.receivers="$want" "$@" 2>/dev/null >/dev/null \
    || die "labels {$*} do not route to $want"
  echo "{$*} -> $want"
}
route pager severity=critical alertname=MailflowConnectorDown connector=x
route tickets severity=warning alertname=MailflowConnectionRefused connector=x code=4.4.316
route tickets alertname=SomethingElse

say "every alert has a severity, a summary, a description and a runbook_url"
n_alerts=$(grep -c '^ *- alert: ' "$rules")
for key in 'severity:' 'summary:' 'description:' 'runbook_url:'; do
  n=$(grep -c "^ *$key" "$rules")
  [ "$n" -eq "$n_alerts" ] || die "$n_alerts alerts but $n '$key' lines in $rules"
done
echo "$n_alerts alerts"

say "one runbook base in the rules and the tests"
bases=$(grep -ho 'https\?://[^"[:space:]]*/\(docs/runbooks\|alerts/README\.md\)' "$alerts"/*.yml \
  | sed 's#/\(docs/runbooks\|alerts/README\.md\)$##' | sort -u)
[ "$(printf '%s\n' "$bases" | grep -c .)" -eq 1 ] || die "runbook_url bases disagree: $(echo $bases)"
declared=$(sed -n 's/^# *RUNBOOK_BASE = *//p' "$rules")
[ "$declared" = "$bases" ] || die "RUNBOOK_BASE in the header of $rules ($declared) is not the base the links use ($bases)"
echo "$bases"

say "per-code alerts: muted by MailflowConnectorDown, runbook present"
per_code=$(awk '/^ *- alert: /{name=$3} /^ *expr: mailflow:failing_host_reason:increase10m\{code="/{print name}' "$rules")
[ "$(printf '%s\n' "$per_code" | grep -c .)" -eq 7 ] || die "expected 7 per-code alerts, found: $(echo $per_code)"
for name in $per_code; do
  grep -q "$name" "$am_cfg" || die "$name is missing from the inhibit rule in $am_cfg"
done
grep -q 'MailflowQueueAgeing' "$am_cfg" || die "MailflowQueueAgeing is missing from the inhibit rule"
codes=$(grep -o 'increase10m{code="[^"]*"}' "$rules" | sed 's/.*code="\([^"]*\)".*/\1/' | sort -u)
if [ -d "$repo/docs/runbooks" ]; then
  for code in $codes; do
    [ -f "$repo/docs/runbooks/$code.md" ] || die "docs/runbooks/$code.md is missing (linked from $rules)"
  done
  echo "docs/runbooks/{$(echo $codes | tr ' ' ',')}.md present"
else
  echo "warning: $repo/docs/runbooks does not exist; runbook links will be dead" >&2
fi

say "all alert checks passed"
