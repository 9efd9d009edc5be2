#!/usr/bin/env bash
# Generates, from the jsonnet mixin in this directory, the files the repository ships:
#   alerts/mailflow.rules.yml, dashboards/mailflow-*.json,
#   deploy/kubernetes/prometheusrule.yaml, deploy/kubernetes/dashboards-configmap.yaml
# build.sh          writes them
# build.sh --check  writes nothing; fails with a diff when a committed file differs from the mixin
# Needs jsonnet (Debian: jsonnet) and python3; with PyYAML (python3-yaml) the YAML written is
# also parsed back and compared with the mixin's data.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
command -v jsonnet >/dev/null || { echo "jsonnet not found (Debian: apt-get install jsonnet)" >&2; exit 1; }
verify=()
python3 -c 'import yaml' 2>/dev/null && verify=(--verify)
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
jsonnet -J "$here" "$here/build.jsonnet" | python3 "$here/lib/emit.py" "$out" "${verify[@]}"
files=$(cd "$out" && find . -type f | sed 's#^\./##' | sort)
if $check; then
  rc=0
  for f in $files; do
    diff -u --label "$f (committed)" --label "$f (from the mixin)" "$repo/$f" "$out/$f" || rc=1
  done
  [ "$rc" -eq 0 ] && echo "deploy/mixin: $(echo $files | wc -w) generated files are up to date" \
    || echo "FAIL: generated files differ from the mixin; run deploy/mixin/build.sh and commit" >&2
  exit "$rc"
fi
for f in $files; do
  mkdir -p "$(dirname "$repo/$f")"
  cp "$out/$f" "$repo/$f"
  echo "wrote $f"
done
