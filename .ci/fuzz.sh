#!/usr/bin/env bash
# Fuzz smoke run: builds every cargo-fuzz target in fuzz/ and runs each for a bounded time on a
# temporary copy of its seed corpus (fuzz/corpus/<target>/) plus the inputs of earlier findings
# (fuzz/artifacts-found/<target>/), so a known crash fails at once and the repository is never
# written to (but for the ignored build directory fuzz/target/). Fails if any target crashes,
# panics (a broken invariant), runs out of memory or hangs on one input.
#
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_TARGETS   space-separated targets (default: all of `cargo fuzz list`)
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (default 20)
#   FUZZ_ARTIFACTS where crashing inputs are copied (default /tmp/mailflow-fuzz-artifacts)
#
# Runs on the stable toolchain: cargo-fuzz passes a few nightly-only rustc flags, which
# RUSTC_BOOTSTRAP=1 allows, and with --sanitizer none needs no nightly standard library.
# Idempotent: installs cargo-fuzz only when missing; reruns reuse fuzz/target/.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-20}"
FUZZ_ARTIFACTS="${FUZZ_ARTIFACTS:-/tmp/mailflow-fuzz-artifacts}"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# The same flags for build and run, so `run` never rebuilds.
build_flags=(--sanitizer none)

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz (from crates.io)"
  start=$SECONDS
  cargo install --locked cargo-fuzz
  echo "cargo-fuzz installed in $((SECONDS - start)) s"
fi
cargo fuzz --version

if ! cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null 2>&1; then
  echo "warning: fuzz/Cargo.lock is behind the main crate's dependencies; cargo will update it." >&2
  echo "         Commit the updated fuzz/Cargo.lock (cargo update --manifest-path fuzz/Cargo.toml -w)." >&2
fi

if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi
[ "${#targets[@]}" -gt 0 ] || { echo "no fuzz targets found" >&2; exit 1; }

if cargo fmt --version >/dev/null 2>&1; then
  log "format of the fuzz targets"
  cargo fmt --manifest-path fuzz/Cargo.toml -- --check
fi

export RUSTC_BOOTSTRAP=1
log "building all fuzz targets"
start=$SECONDS
(cd fuzz && cargo fuzz build "${build_flags[@]}")
echo "built in $((SECONDS - start)) s"

work="$(mktemp -d /tmp/mailflow-fuzz.XXXXXX)"
trap 'rm -rf "$work"' EXIT

failed=()
for t in "${targets[@]}"; do
  log "fuzzing $t for ${FUZZ_SECONDS} s"
  corpus="$work/$t/corpus"
  artifacts="$work/$t/artifacts"
  mkdir -p "$corpus" "$artifacts"
  for dir in "fuzz/corpus/$t" "fuzz/artifacts-found/$t"; do
    if [ -d "$dir" ]; then
      find "$dir" -maxdepth 1 -type f -exec cp -t "$corpus" {} +
    fi
  done
  seeds=$(find "$corpus" -type f | wc -l)
  echo "$seeds seed inputs (fuzz/corpus/$t, fuzz/artifacts-found/$t)"
  extra=()
  if [ -f "fuzz/dict/$t.dict" ]; then
    extra+=(-dict="$PWD/fuzz/dict/$t.dict")
  fi
  out="$work/$t/log"
  set +e
  (cd fuzz && cargo fuzz run "${build_flags[@]}" "$t" "$corpus" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_TIMEOUT" -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 "${extra[@]}") >"$out" 2>&1
  rc=$?
  set -e
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb):' "$out" || true
  grep -E '^#[0-9]+[[:space:]]+DONE' "$out" | tail -n 1 || true
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    echo "FAILED: $t (exit $rc):"
    if grep -q "panicked at" "$out"; then
      # The broken assertion and its message, without the backtrace.
      sed -n '/panicked at/,/^stack backtrace:/p' "$out" | head -n 80
    fi
    if ! grep -E "ERROR: libFuzzer|SUMMARY: libFuzzer" "$out"; then
      tail -n 40 "$out"
    fi
    mkdir -p "$FUZZ_ARTIFACTS/$t"
    for f in "$artifacts"/*; do
      [ -f "$f" ] || continue
      cp "$f" "$FUZZ_ARTIFACTS/$t/"
      echo "input $(basename "$f") ($(wc -c <"$f") bytes), copied to $FUZZ_ARTIFACTS/$t/; base64:"
      head -c 4096 "$f" | base64
    done
    echo "Reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $t $FUZZ_ARTIFACTS/$t/<file>)"
  fi
done

log "fuzz summary"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed: ${failed[*]}"
  echo "fuzz: $(( ${#targets[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
  exit 1
fi
echo "every target ran ${FUZZ_SECONDS} s without a crash"
echo "fuzz: ${#targets[@]} passed, 0 failed"
