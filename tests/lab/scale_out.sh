#!/usr/bin/env bash
# Scale-out stage of the end-to-end lab (called by tests/lab/run.sh while its unbound, Postfix,
# responders and fake tenant run): two agents sharded with --shard 0/2 and 1/2, and the
# Prometheus-driven mode (two on-demand agents, a Prometheus whose two jobs stand for two
# replicas splitting `/probe?connector=` targets with hashmod). Checked by scale_out.py.
#
# usage: tests/lab/scale_out.sh LAB_DIR ARTIFACTS_DIR AGENT_BINARY FULL_AGENT_URL
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LAB=$1 ARTIFACTS=$2 AGENT=$3 FULL=$4
say() { printf '[lab/scale-out] %s\n' "$*"; }
die() { say "FAIL: $*"; exit 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
waitport() {
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done
  die "nothing listens on $1:$2"
}
start() { # name port args...
  local name=$1 port=$2; shift 2
  "$AGENT" serve --config.file "$LAB/agent.yaml" --web.listen-address "127.0.0.1:$port" \
    --storage.path "$LAB/scale/$name" --log.level info "$@" >"$ARTIFACTS/scale-$name.log" 2>&1 &
  pids+=($!)
}

mkdir -p "$LAB/scale"
say "agents: --shard 0/2 on :19326, --shard 1/2 on :19327, --probe.on-demand-only on :19328 and :19329"
start shard0 19326 --shard 0/2
start shard1 19327 --shard 1/2
start ondemand0 19328 --probe.on-demand-only
start ondemand1 19329 --probe.on-demand-only
for p in 19326 19327 19328 19329; do waitport 127.0.0.1 $p; done

say "Prometheus on :19091: jobs probe-replica-0/1 keep their hashmod share of /probe targets"
# The targets are the full agent's enabled connectors (file and tenant-synced alike).
targets=$(curl -sf --max-time 5 "$FULL/api/status" | python3 -c '
import json, sys
print(json.dumps(sorted(c["connector"] for c in json.load(sys.stdin) if c["state"] != "disabled")))')
mkdir -p "$LAB/scale/prometheus"
{
  printf 'global: { scrape_interval: 3s, evaluation_interval: 3s }\nscrape_configs:\n'
  for i in 0 1; do
    cat <<EOF
  - job_name: probe-replica-$i
    metrics_path: /probe
    scrape_timeout: 3s
    static_configs: [{ targets: $targets }]
    relabel_configs:
      - { source_labels: [__address__], target_label: __param_connector }
      - { source_labels: [__param_connector], target_label: instance }
      - { source_labels: [__param_connector], modulus: 2, target_label: __tmp_shard, action: hashmod }
      - { source_labels: [__tmp_shard], regex: "$i", action: keep }
      - { target_label: __address__, replacement: "127.0.0.1:1932$((8 + i))" }
EOF
  done
} >"$LAB/scale/prometheus/prometheus.yml"
cp "$LAB/scale/prometheus/prometheus.yml" "$ARTIFACTS/scale-prometheus.yml"
promtool check config "$LAB/scale/prometheus/prometheus.yml" >/dev/null || die "promtool check config"
prometheus --config.file="$LAB/scale/prometheus/prometheus.yml" \
  --storage.tsdb.path="$LAB/scale/prometheus/data" --web.listen-address=127.0.0.1:19091 \
  >"$ARTIFACTS/scale-prometheus.log" 2>&1 &
pids+=($!)
waitport 127.0.0.1 19091

python3 "$here/scale_out.py" "$FULL" http://127.0.0.1:19326 http://127.0.0.1:19327 \
  http://127.0.0.1:19328 http://127.0.0.1:19329 http://127.0.0.1:19091
