#!/usr/bin/env bash
# End-to-end lab: real unbound, Postfix, Prometheus, Alertmanager and a webhook sink on loopback,
# the agent probing them, and assertions on what reaches the webhook. Needs root (port 25/53,
# Postfix, nft). Everything listens on 127.0.0.0/8 only and is stopped on exit.
#
# usage: tests/lab/run.sh            (expects the Debian packages from .ci/run to be installed)
# env:   LAB=/tmp/mailflow-lab       working directory (recreated)
#        ARTIFACTS=$LAB/artifacts    logs and the status-page screenshot end up here
#        AGENT=target/release/mailflow-exporter
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
LAB=${LAB:-/tmp/mailflow-lab}
ARTIFACTS=${ARTIFACTS:-$LAB/artifacts}
AGENT=${AGENT:-$repo/target/release/mailflow-exporter}
PY=python3

say() { printf '[lab] %s\n' "$*"; }
die() { say "FAIL: $*"; exit 1; }
waitport() { # host port
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done
  die "nothing listens on $1:$2"
}
bg() { # name command... : start in the background, remember the pid
  local name=$1; shift
  "$@" >"$ARTIFACTS/$name.log" 2>&1 &
  echo $! >"$LAB/$name.pid"
}

[ "$(id -u)" = 0 ] || die "run as root (Postfix, ports 25 and 53, nft)"
for cmd in unbound postfix prometheus prometheus-alertmanager promtool amtool openssl $PY; do
  command -v "$cmd" >/dev/null || die "$cmd missing: install the packages listed in .ci/run"
done
[ -x "$AGENT" ] || die "agent binary $AGENT missing (cargo build --release)"
# The expectations below must agree with the taxonomy before anything starts.
$PY "$here/assert_lab.py" --self-check || die "assert_lab.py disagrees with docs/codes.json"

cleanup() {
  set +e
  for f in "$LAB"/*.pid; do
    [ -e "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null
  done
  [ -s "$LAB/dns/unbound.pid" ] && kill "$(cat "$LAB/dns/unbound.pid")" 2>/dev/null
  postfix -c "$LAB/postfix" stop >/dev/null 2>&1
  nft delete table inet mailflow_lab 2>/dev/null
  sleep 0.5
}
trap cleanup EXIT

rm -rf "$LAB"
mkdir -p "$LAB"/{dns,postfix/spool,postfix/data,rules,prometheus,alertmanager} "$ARTIFACTS"
# ARTIFACTS may outlive the run (CI keeps it outside $LAB): an earlier run's notifications must
# not satisfy this run's checks.
rm -f "$ARTIFACTS/notifications.jsonl"
render() { sed -e "s#@LAB@#$LAB#g" -e "s#@TENANT_URL@#${TENANT_URL:-}#g" "$1" >"$2"; }

say "PKI"
"$here/pki.sh" "$LAB/pki"

say "unbound on 127.0.0.53:53"
render "$here/unbound.conf.in" "$LAB/dns/unbound.conf"
cp "$here/servfail.test.zone" "$LAB/dns/"
printf '. 3600000 NS a.root.lab.\na.root.lab. 3600000 A 127.0.0.1\n' >"$LAB/dns/root.hints"
unbound-checkconf "$LAB/dns/unbound.conf" >/dev/null
unbound -c "$LAB/dns/unbound.conf"
waitport 127.0.0.53 53

say "Postfix on 127.0.0.10-15,19:25"
render "$here/postfix/main.cf.in" "$LAB/postfix/main.cf"
render "$here/postfix/master.cf.in" "$LAB/postfix/master.cf"
chown postfix "$LAB/postfix/data"
postfix -c "$LAB/postfix" start >/dev/null 2>&1 || die "postfix did not start: $(postfix -c "$LAB/postfix" check 2>&1 | head -5)"
for ip in 10 11 12 13 14 15 19; do waitport 127.0.0.$ip 25; done

say "misbehaving responders on 127.0.0.16 (hang-up) and 127.0.0.18 (odd reply)"
bg responders $PY "$here/responders.py" 127.0.0.16:25=hangup 127.0.0.18:25=odd
waitport 127.0.0.16 25; waitport 127.0.0.18 25

say "blackhole 127.0.0.99 (nft drop); 127.0.0.17:25 has no listener (refused)"
if ! nft -f - <<'NFT'
table inet mailflow_lab {
  chain output {
    type filter hook output priority filter; policy accept;
    ip daddr 127.0.0.99 drop
  }
}
NFT
then
  die "nft could not install the blackhole rule (needs CAP_NET_ADMIN)"
fi

say "webhook sink, Alertmanager, agent, Prometheus"
bg webhook $PY "$here/webhook.py" 127.0.0.1:19095 "$ARTIFACTS/notifications.jsonl"
render "$here/alertmanager.yml.in" "$LAB/alertmanager/alertmanager.yml"
amtool check-config "$LAB/alertmanager/alertmanager.yml" >/dev/null
bg alertmanager prometheus-alertmanager --config.file="$LAB/alertmanager/alertmanager.yml" \
  --storage.path="$LAB/alertmanager/data" --web.listen-address=127.0.0.1:19093 --cluster.listen-address=
say "fake tenant (Microsoft's endpoints on loopback) with tests/lab/tenant.json"
bg tenant "$AGENT" fake-tenant --dir "$LAB/tenant" --scenario "$here/tenant.json"
for _ in $(seq 1 100); do [ -s "$LAB/tenant/url" ] && break; sleep 0.1; done
[ -s "$LAB/tenant/url" ] || die "the fake tenant did not start: $(cat "$ARTIFACTS/tenant.log" 2>/dev/null)"
TENANT_URL=$(cat "$LAB/tenant/url")
render "$here/agent.yaml.in" "$LAB/agent.yaml"
bg agent "$AGENT" serve --config.file "$LAB/agent.yaml" --web.listen-address 127.0.0.1:19325 \
  --storage.path "$LAB/agent-data" --log.level info
# The shipped rules with every `for:` shortened, so the lab runs in seconds. Expressions, labels
# and annotations are exactly the shipped ones (the transformation is printed).
$PY "$here/fast_rules.py" "$repo/alerts" "$LAB/rules"
render "$here/prometheus.yml.in" "$LAB/prometheus/prometheus.yml"
promtool check config "$LAB/prometheus/prometheus.yml" >/dev/null
bg prometheus prometheus --config.file="$LAB/prometheus/prometheus.yml" \
  --storage.tsdb.path="$LAB/prometheus/data" --web.listen-address=127.0.0.1:19090
for hp in 127.0.0.1:19095 127.0.0.1:19093 127.0.0.1:19325 127.0.0.1:19090; do waitport "${hp%:*}" "${hp#*:}"; done

say "promtool check metrics on a live scrape"
curl -sf --max-time 5 http://127.0.0.1:19325/metrics >"$ARTIFACTS/metrics.txt"
promtool check metrics <"$ARTIFACTS/metrics.txt" || die "promtool check metrics"

say "waiting for alerts"
$PY "$here/assert_lab.py" fire "$ARTIFACTS/notifications.jsonl"

say "every PromQL expression of the dashboards against this Prometheus"
$PY "$repo/dashboards/check.py" --prometheus http://127.0.0.1:19090 --wait 120 --require-tenant-data

say "status page screenshot (headless Chromium)"
if command -v chromium >/dev/null; then
  profile=$(mktemp -d)
  timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --window-size=1280,1800 --virtual-time-budget=3000 \
    --screenshot="$ARTIFACTS/status-page.png" http://127.0.0.1:19325/ >/dev/null 2>&1 || true
  rm -rf "$profile"
  [ -s "$ARTIFACTS/status-page.png" ] || die "no screenshot"
  say "screenshot: $ARTIFACTS/status-page.png"
else
  die "chromium missing"
fi

say "fixing one fault: an SMTP server appears on 127.0.0.17:25"
bg fixed $PY "$here/responders.py" 127.0.0.17:25=plain
waitport 127.0.0.17 25
$PY "$here/assert_lab.py" resolve "$ARTIFACTS/notifications.jsonl"

say "scale-out: agent shards (--shard) and Prometheus hashmod over /probe (--probe.on-demand-only)"
bash "$here/scale_out.sh" "$LAB" "$ARTIFACTS" "$AGENT" http://127.0.0.1:19325

say "agent fault: two replicas lose their resolver; one page (the agent alert), the rest inhibited"
bash "$here/agent_fault.sh" "$LAB" "$ARTIFACTS" "$AGENT"

say "all lab checks passed"
