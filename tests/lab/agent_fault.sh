#!/usr/bin/env bash
# Agent-fault stage of the end-to-end lab (called by tests/lab/run.sh): the agent itself loses
# DNS, as when its resolver dies. Two full replicas of one agent (same config, as for HA) whose
# only resolver is 127.0.0.1:9 (nothing listens: every query fails at once), a Prometheus with
# the lab's shipped rules (only `for:` shortened) and deploy/prometheus/prometheus.yml's
# alert relabelling, an Alertmanager with the lab's inhibit rules, and a webhook of their own.
# Checked by agent_fault.py: the per-connector alerts do fire in Prometheus, yet the webhook gets
# exactly one notification, MailflowAgentDnsUnreachable, once (two replicas, one page).
#
# usage: tests/lab/agent_fault.sh LAB_DIR ARTIFACTS_DIR AGENT_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
LAB=$1 ARTIFACTS=$2 AGENT=$3
D="$LAB/agent-fault"
say() { printf '[lab/agent-fault] %s\n' "$*"; }
die() { say "FAIL: $*"; exit 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
waitport() {
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done
  die "nothing listens on $1:$2"
}

rm -rf "$D" && mkdir -p "$D/replica0" "$D/replica1" "$D/am" "$D/prom"
cat >"$D/agent.yaml" <<'YAML'
# Four partners reached by MX; the agent's only resolver is a loopback port nobody serves.
defaults: { interval: 3s, timeout: 2s, helo: probe.lab.test, message_expiration: 24h }
dns: { servers: ["127.0.0.1:9"] }
connectors:
  - { name: Partner A, recipient_domains: [a.partners.test] }
  - { name: Partner B, recipient_domains: [b.partners.test] }
  - { name: Partner C, recipient_domains: [c.partners.test] }
  - { name: Partner D, recipient_domains: [d.partners.test] }
YAML
"$AGENT" serve --config.check --config.file "$D/agent.yaml" >/dev/null || die "agent config"

say "two replicas of one agent on :19331 and :19332 (resolver 127.0.0.1:9, unserved)"
for i in 0 1; do
  "$AGENT" serve --config.file "$D/agent.yaml" --web.listen-address "127.0.0.1:1933$((1 + i))" \
    --storage.path "$D/replica$i" --log.level warn >"$ARTIFACTS/agent-fault-replica$i.log" 2>&1 &
  pids+=($!)
done

say "webhook :19096, Alertmanager :19097 (the lab's inhibit rules), Prometheus :19092"
# A fresh log: an earlier run's notifications must not count for this one.
rm -f "$ARTIFACTS/agent-fault-notifications.jsonl"
python3 "$here/webhook.py" 127.0.0.1:19096 "$ARTIFACTS/agent-fault-notifications.jsonl" \
  >"$ARTIFACTS/agent-fault-webhook.log" 2>&1 &
pids+=($!)
sed -e "s#@LAB@#$LAB#g" -e "s#127.0.0.1:19095#127.0.0.1:19096#" "$here/alertmanager.yml.in" >"$D/am/alertmanager.yml"
amtool check-config "$D/am/alertmanager.yml" >/dev/null || die "amtool check-config"
prometheus-alertmanager --config.file="$D/am/alertmanager.yml" --storage.path="$D/am/data" \
  --web.listen-address=127.0.0.1:19097 --cluster.listen-address= >"$ARTIFACTS/agent-fault-am.log" 2>&1 &
pids+=($!)
# The shipped HA relabelling, taken from deploy/prometheus/prometheus.yml as it is.
relabel=$(python3 - "$repo/deploy/prometheus/prometheus.yml" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
start = next(i for i, l in enumerate(lines) if l.strip() == "alert_relabel_configs:")
indent = len(lines[start]) - len(lines[start].lstrip())
out = [lines[start]]
for l in lines[start + 1:]:
    if l.strip() and len(l) - len(l.lstrip()) <= indent:
        break
    out.append(l)
print("\n".join(l[indent:] for l in out))
PY
)
[ -n "$relabel" ] || die "no alert_relabel_configs in deploy/prometheus/prometheus.yml"
# Two steps: first without alerting, until Prometheus has scraped both replicas; then (SIGHUP)
# with it. A fresh Prometheus may evaluate absent(up) before its first scrape, and with `for:`
# shortened to seconds MailflowAgentAbsent would page for that start-up moment alone.
prom_config() { # with_alerting(0|1)
  printf 'global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\n  external_labels: { replica: lab-a }\n'
  printf 'rule_files: ["%s/rules/*.yml"]\n' "$LAB"
  if [ "$1" = 1 ]; then
    printf 'alerting:\n'
    printf '%s\n' "$relabel" | sed 's/^/  /'
    printf '  alertmanagers: [{ static_configs: [{ targets: ["127.0.0.1:19097"] }] }]\n'
  fi
  printf 'scrape_configs:\n  - job_name: mailflow-exporter\n'
  printf '    static_configs: [{ targets: ["127.0.0.1:19331", "127.0.0.1:19332"] }]\n'
}
prom_config 1 >"$D/prom/prometheus.yml"
cp "$D/prom/prometheus.yml" "$ARTIFACTS/agent-fault-prometheus.yml"
promtool check config "$D/prom/prometheus.yml" >/dev/null || die "promtool check config"
prom_config 0 >"$D/prom/prometheus.yml"
prometheus --config.file="$D/prom/prometheus.yml" --storage.tsdb.path="$D/prom/data" \
  --web.listen-address=127.0.0.1:19092 >"$ARTIFACTS/agent-fault-prometheus.log" 2>&1 &
prom_pid=$!
pids+=($prom_pid)
for p in 19331 19332 19096 19097 19092; do waitport 127.0.0.1 $p; done
q='count(up{job="mailflow-exporter"} == 1) == 2 and on() absent(ALERTS{alertname="MailflowAgentAbsent"})'
for _ in $(seq 1 60); do
  curl -sf --max-time 5 --get --data-urlencode "query=$q" http://127.0.0.1:19092/api/v1/query \
    | grep -q '"result":\[{' && break
  sleep 1
done
curl -sf --max-time 5 --get --data-urlencode "query=$q" http://127.0.0.1:19092/api/v1/query \
  | grep -q '"result":\[{' || die "Prometheus did not scrape both replicas within 60s"
cp "$ARTIFACTS/agent-fault-prometheus.yml" "$D/prom/prometheus.yml"
kill -HUP "$prom_pid"
for _ in $(seq 1 30); do
  curl -sf --max-time 5 http://127.0.0.1:19092/api/v1/status/config | grep -q 19097 && break
  sleep 1
done
curl -sf --max-time 5 http://127.0.0.1:19092/api/v1/status/config | grep -q 19097 \
  || die "Prometheus did not reload the config with alerting"

python3 "$here/agent_fault.py" http://127.0.0.1:19092 "$ARTIFACTS/agent-fault-notifications.jsonl" \
  http://127.0.0.1:19331 http://127.0.0.1:19332
