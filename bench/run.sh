#!/usr/bin/env bash
# The whole measurement in one go: installs what it needs (Debian packages, as root), builds the
# agent and the bench binaries in release mode, runs bench.py and writes bench/results/<date>.md
# and .json. Idempotent; loopback traffic only.
#
# usage: bash bench/run.sh [bench.py options…]
# env:   BENCH_QUICK=1     short smoke run (≤ 3 minutes once built); results named *-quick.*
#        BENCH_PROFILE=1   also a perf profile of the agent per STARTTLS probe (*-profile.txt)
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
say() { printf '[bench] %s\n' "$*"; }

# stop_daemon PORT EXE: a package's own daemon would hold a port and add CPU noise. Stopped by
# the pid that listens on PORT, and only if that pid runs EXE.
stop_daemon() {
  local pid
  for pid in $(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$2" ]; then
      say "stopping the packaged daemon $2 (pid $pid) on port $1"
      kill "$pid"
    fi
  done
}

packages=()
command -v prometheus-blackbox-exporter >/dev/null || packages+=(prometheus-blackbox-exporter)
command -v prometheus >/dev/null || packages+=(prometheus)
command -v perf >/dev/null || packages+=(linux-perf)
command -v python3 >/dev/null || packages+=(python3)
command -v ss >/dev/null || packages+=(iproute2)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing ${packages[*]}"
    apt-get update -qq
    # policy-rc.d may or may not let the packages start their daemons; stop them either way.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    stop_daemon 9115 /usr/bin/prometheus-blackbox-exporter
    stop_daemon 9090 /usr/bin/prometheus
  else
    say "not root: cannot install ${packages[*]}; the parts that need them are skipped"
  fi
fi

say "building the agent (release)"
(cd "$repo" && cargo build --release --locked -q)
say "building the farm and the floor (release)"
(cd "$bench" && cargo build --release --locked -q)

args=()
[ -n "${BENCH_QUICK:-}" ] && args+=(--quick)
[ -n "${BENCH_PROFILE:-}" ] && args+=(--parts floor,agent,probe,detect,profile)
exec python3 "$bench/bench.py" "${args[@]}" "$@"
