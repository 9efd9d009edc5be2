#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (config: deny.toml).
#
# * licenses, bans, sources: always run, must pass.
# * advisories: need the RustSec advisory database, a git repository on github.com.
#   - MAILFLOW_ADVISORY_DB=/path/to/advisory-db (a git clone of the RustSec advisory-db, copied
#     from a machine that can reach github.com): checked against that copy with fetching disabled;
#     must pass, and a copy older than deny.toml's maximum-db-staleness (90 days) is an error.
#   - otherwise the database is fetched; if that is impossible (this project's machines and CI
#     reach package registries only), a loud line says advisories were NOT checked, and the
#     script goes on. If the fetch works, the check must pass.
# Idempotent: installs cargo-deny only when missing; writes nothing in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

if ! cargo deny --version >/dev/null 2>&1; then
  log "installing cargo-deny (from crates.io)"
  start=$SECONDS
  cargo install --locked cargo-deny
  echo "cargo-deny installed in $((SECONDS - start)) s"
fi
cargo deny --version

log "cargo deny: licenses, bans, sources"
cargo deny --locked check licenses bans sources

log "cargo deny: advisories"
tmp="$(mktemp -d /tmp/mailflow-deny.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

if [ -n "${MAILFLOW_ADVISORY_DB:-}" ]; then
  db="$(realpath -e "$MAILFLOW_ADVISORY_DB")" || {
    echo "MAILFLOW_ADVISORY_DB=$MAILFLOW_ADVISORY_DB does not exist" >&2
    exit 1
  }
  if [ ! -d "$db/crates" ] || ! last="$(git -C "$db" log -1 --format=%ct HEAD 2>/dev/null)"; then
    echo "MAILFLOW_ADVISORY_DB=$db is not a git clone of the RustSec advisory-db (no crates/ or no commit)" >&2
    exit 1
  fi
  age_days=$(( ($(date +%s) - last) / 86400 ))
  echo "local advisory database $db: last commit $(date -u -d "@$last" +%F), $age_days days ago"
  # cargo-deny judges staleness by file times in .git, which a plain copy renews: judge by the
  # last commit instead (the database gets commits every week).
  if [ "$age_days" -gt 90 ]; then
    echo "the advisory database is older than 90 days: update it (git pull where github.com is reachable)" >&2
    exit 1
  fi
  # cargo-deny looks for each database under <db-path>/<last url segment>-<hash of the url>; this
  # is the directory name of the default database, https://github.com/rustsec/advisory-db.
  ln -s "$db" "$tmp/advisory-db-3157b0e258782691"
  # The same config with the database root pointed at the link (deny.toml sets neither key).
  awk -v root="$tmp" '
    { print }
    /^\[advisories\][[:space:]]*$/ {
      print "db-path = \"" root "\""
      print "db-urls = [\"https://github.com/rustsec/advisory-db\"]"
    }' deny.toml >"$tmp/deny.toml"
  # --offline: the database is only opened, never fetched (cargo-deny 0.20 folded
  # `check --disable-fetch` into the global --offline).
  cargo deny --locked --offline --config "$tmp/deny.toml" check advisories
  echo "advisories checked against the local copy"
  exit 0
fi

# Fetch on its own first, so a fetch failure is never mistaken for an advisory (or the reverse).
if timeout 300 cargo deny --locked fetch db >"$tmp/fetch.log" 2>&1; then
  cargo deny --locked --offline check advisories
  echo "advisories checked against a freshly fetched database"
else
  sed 's/^/    /' "$tmp/fetch.log" | tail -n 15
  echo
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "!!! advisories NOT checked: the RustSec database at github.com is unreachable from this machine."
  echo "!!! No dependency was checked for known vulnerabilities. To check them, run this script with"
  echo "!!! MAILFLOW_ADVISORY_DB=/path/to/a/git/clone/of/advisory-db (at most 90 days old)."
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
fi
