#!/usr/bin/env bash
# Checks the deployable artefacts of deploy/ without a container engine, a running systemd or a
# cluster (none of them is on CI's machine):
#   container   the Dockerfile's rules and .dockerignore's context (deploy/checks/container.py);
#               its dependency layer (dummy src/) run in a scratch directory, then its own
#               `cargo build` command; its HEALTHCHECK command run against `serve` on loopback
#               (as uid 10325, like the image), healthy and not. The image itself is not built:
#               no container engine runs here or on CI
#   systemd     systemd-analyze verify and security (offline, exposure <= 2.0), enable, in a
#               scratch root; the unit's flags exist
#   kubernetes  kubernetes-validate --strict (built-in kinds), the prometheus-operator objects
#               (ServiceMonitor; PrometheusRule through promtool; the dashboards ConfigMap), the
#               kustomize builds (assembled by the checker, and compared with `kustomize build` or
#               `kubectl kustomize` when one that knows components is installed), the config in
#               the ConfigMap, --shard under the StatefulSet pods' host names, and that the job
#               the ServiceMonitor gives the targets is the job the alert rules select
#               (deploy/checks/kubernetes.py)
# Run as root on Debian, from any directory; idempotent. Debian packages: python3 python3-venv
# prometheus (promtool) systemd util-linux (setpriv, unshare); the Rust toolchain for the build.
# Python packages go into a venv under ~/.cache (deploy/requirements.txt, pinned).
# Never sends traffic beyond loopback: the agent started here has a loopback dns.servers and no
# connector, and listens on 127.0.0.1 only.
#
# env: DEPLOY_VENV=DIR   the venv (default ~/.cache/mailflow-exporter/deploy-venv)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 not found (Debian: apt-get install $2)"; }

need python3 python3
need promtool prometheus
need systemd-analyze systemd
need systemctl systemd

# Every wait below has a bound: builds and the venv's install by `timeout`, the agent by polling.
UID_IMAGE=10325
work=$(mktemp -d /tmp/mailflow-deploy-check.XXXXXX)
chmod 0755 "$work"
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
say "container: Dockerfile rules and the build context (.dockerignore)"
python3 deploy/checks/container.py "$repo"

say "container: the Dockerfile's dependency layer, in a scratch directory (the image build itself needs Docker)"
# Shares target/ with the build below, so the dependencies are compiled once.
python3 deploy/checks/container.py "$repo" --dependency-step "$repo/target" \
  || die "the Dockerfile's dependency step failed"

say "container: the Dockerfile's build command, on this machine"
build_cmd=$(python3 deploy/checks/container.py "$repo" --build-command)
read -ra build_argv <<<"$build_cmd"
[ "${build_argv[0]}" = cargo ] || die "unexpected build command: $build_cmd"
echo "+ $build_cmd"
timeout 3600 "${build_argv[@]}"
bin="$repo/target/release/mailflow-exporter"
[ -x "$bin" ] || die "$bin was not built"
"$bin" --version

say "container: the HEALTHCHECK command against serve on loopback, as uid $UID_IMAGE"
mapfile -t hc < <(python3 deploy/checks/container.py "$repo" --healthcheck-argv)
# The image's binary is this build; run it from a directory uid $UID_IMAGE can read.
install -m 0755 "$bin" "$work/mailflow-exporter"
hc[0]="$work/mailflow-exporter"
port=""
for i in "${!hc[@]}"; do
  case "${hc[$i]}" in --web.listen-address=*) port="${hc[$i]##*:}" ;; esac
done
port="${port:-10325}"
free_port() { # prints $1 when 127.0.0.1:$1 is free, else a free port
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    s.close(); s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1]); s.close()
PY
}
use_port=$(free_port "$port")
if [ "$use_port" != "$port" ]; then
  echo "port $port is taken on this machine: using $use_port for serve and the health check"
  for i in "${!hc[@]}"; do
    case "${hc[$i]}" in --web.listen-address=*) hc[$i]="${hc[$i]%:*}:$use_port" ;; esac
  done
fi
mkdir -p "$work/etc" "$work/state"
cat >"$work/etc/mailflow.yaml" <<'EOF'
# deploy/check.sh: nothing to probe; a loopback DNS server (nothing needs to listen there).
dns: { servers: ["127.0.0.1:5353"] }
connectors: []
EOF
chmod 0644 "$work/etc/mailflow.yaml"
as_image_user=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  chown "$UID_IMAGE:$UID_IMAGE" "$work/state"
  chmod 0700 "$work/state"
  as_image_user=(setpriv "--reuid=$UID_IMAGE" "--regid=$UID_IMAGE" --clear-groups)
else
  echo "not root (or no setpriv): serve and the health check run as $(id -un)"
fi
"${as_image_user[@]}" "$work/mailflow-exporter" serve --config.file="$work/etc/mailflow.yaml" \
  --storage.path="$work/state" --web.listen-address="127.0.0.1:$use_port" >"$work/serve.log" 2>&1 &
serve_pid=$!
echo "+ ${hc[*]}"
healthy=""
for _ in $(seq 1 100); do
  kill -0 "$serve_pid" 2>/dev/null || die "serve exited: $(cat "$work/serve.log")"
  if out=$("${as_image_user[@]}" "${hc[@]}" 2>&1); then healthy="$out"; break; fi
  sleep 0.1
done
[ -n "$healthy" ] || die "the health check never passed against a running serve: $out; serve: $(cat "$work/serve.log")"
echo "$healthy (exit 0 while serve runs)"
[ -e "$work/state/lock" ] || die "serve (uid $UID_IMAGE) did not lock its --storage.path"
kill -TERM "$serve_pid"
for _ in $(seq 1 300); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$serve_pid" 2>/dev/null && { kill -KILL "$serve_pid"; die "serve did not stop within 30 s of SIGTERM"; }
rc=0; wait "$serve_pid" || rc=$?
serve_pid=""
[ "$rc" -eq 0 ] || die "serve did not stop cleanly on SIGTERM (exit $rc): $(cat "$work/serve.log")"
rc=0; out=$("${as_image_user[@]}" "${hc[@]}" 2>&1) || rc=$?
[ "$rc" -ne 0 ] || die "the health check passed with nothing listening: $out"
echo "$out (exit $rc with nothing listening)"

# ---------------------------------------------------------------------------------------------
say "systemd: verify, security (offline) and enable, in a scratch root"
unit=deploy/systemd/mailflow-exporter.service
root="$work/sysroot"
install -D -m 0755 "$bin" "$root/usr/local/bin/mailflow-exporter"
install -D -m 0644 "$unit" "$root/etc/systemd/system/mailflow-exporter.service"
install -D -m 0644 deploy/mailflow.example.yaml "$root/etc/mailflow-exporter/config.yaml"
mkdir -p "$root/usr/lib/systemd" "$root/usr/bin"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"   # the targets the unit names
install -m 0755 "$(type -P kill)" "$root/usr/bin/kill"   # ExecReload
ln -sfn usr/bin "$root/bin"
# verify prints problems (an invalid Documentation= URL, an unknown key, a missing binary) as
# warnings and may still exit 0: any output fails.
out=$(systemd-analyze verify --root="$root" mailflow-exporter.service 2>&1) || die "systemd-analyze verify: $out"
[ -z "$out" ] || die "systemd-analyze verify: $out"
echo "systemd-analyze verify: clean"
# --threshold counts in tenths: 20 = exposure 2.0.
rc=0; sec=$(systemd-analyze security --offline=yes --threshold=20 "$root/etc/systemd/system/mailflow-exporter.service" 2>&1) || rc=$?
printf '%s\n' "$sec" | grep -E '✗|Overall' || true
level=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
[ -n "$level" ] || die "systemd-analyze security printed no exposure level: $sec"
[ "$rc" -eq 0 ] && python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 2.0 else 1)" "$level" \
  || die "exposure $level is above 2.0"
echo "exposure $level <= 2.0"
systemctl --root="$root" enable mailflow-exporter.service 2>&1
[ -L "$root/etc/systemd/system/multi-user.target.wants/mailflow-exporter.service" ] \
  || die "systemctl enable did not link the unit into multi-user.target.wants"
# The flags of ExecStart exist in this build.
mapfile -t unit_flags < <(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$unit" | sed -n 's/^ExecStart=//p' \
  | grep -o -- '--[a-z][a-z0-9.-]*' | sort -u)
serve_help=$("$bin" serve --help)
for f in "${unit_flags[@]}"; do
  grep -q -- "$f" <<<"$serve_help" || die "$unit: ExecStart flag $f is not a flag of serve"
done
echo "ExecStart flags known to serve: ${unit_flags[*]}"

# ---------------------------------------------------------------------------------------------
say "kubernetes: Python packages (pinned, in a venv)"
venv="${DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mailflow-exporter/deploy-venv}"
req="$repo/deploy/requirements.txt"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  timeout 600 "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" >"$venv/.requirements.sha256"
fi
"$venv/bin/kubernetes-validate" --version

say "kubernetes: manifests, kustomize builds, prometheus-operator objects, job label"
"$venv/bin/python" deploy/checks/kubernetes.py "$repo" "$bin"

say "deploy artefacts: all checks passed"
