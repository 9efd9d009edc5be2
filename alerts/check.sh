#!/usr/bin/env bash
# Checks the alerting rules, their unit tests and the example Prometheus and Alertmanager
# configurations. Runs from any directory; exits non-zero at the first failure.
# Needs promtool (Debian: prometheus), amtool (Debian: prometheus-alertmanager) and python3.
# The codes, their per-code alert names and runbooks come from docs/codes.json (the taxonomy of
# src/taxonomy.rs, regenerated with `cargo run -q -- codes --output json > docs/codes.json`).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
alerts="$repo/alerts"
rules="$alerts/mailflow.rules.yml"
prom_cfg="$repo/deploy/prometheus/prometheus.yml"
am_cfg="$repo/deploy/alertmanager/alertmanager.yml"
codes_json="$repo/docs/codes.json"
regenerate="cargo run -q -- codes --output json > docs/codes.json"

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

for tool in promtool amtool; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install prometheus prometheus-alertmanager)"
done
command -v python3 >/dev/null || die "python3 not found (it reads docs/codes.json)"

say "generated files match the mixin (deploy/mixin/build.sh --check)"
bash "$repo/deploy/mixin/build.sh" --check

say "promtool check rules"
promtool check rules "$alerts"/*.rules.yml

say "every unit test file evaluates the recording group first (group_eval_order lists all groups)"
python3 - "$rules" "$alerts" <<'PY' || die "fix group_eval_order in the test files (see above)"
import glob, os, re, sys
groups = re.findall(r"^  - name: (\S+)", open(sys.argv[1], encoding="utf-8").read(), re.M)
bad = 0
for path in sorted(glob.glob(os.path.join(sys.argv[2], "*_test.yml"))):
    m = re.search(r"^group_eval_order:\n((?:  - \S+\n)+)", open(path, encoding="utf-8").read(), re.M)
    order = re.findall(r"  - (\S+)", m.group(1)) if m else []
    if order != groups:
        print(f"{os.path.basename(path)}: group_eval_order {order} is not the rule groups {groups}", file=sys.stderr)
        bad += 1
print(f"{len(groups)} groups, in that order in every test file")
sys.exit(1 if bad else 0)
PY

say "promtool test rules"
(cd "$alerts" && promtool test rules ./*_test.yml)

say "promtool check config (rule_files resolve relative to the config file)"
promtool check config "$prom_cfg"

if [ -f "$repo/deploy/prometheus/scale-out.yml" ]; then
  say "promtool check config deploy/prometheus/scale-out.yml"
  promtool check config "$repo/deploy/prometheus/scale-out.yml"
fi

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
route pager severity=critical alertname=MailflowExoMailHeld connector=x
route tickets severity=warning alertname=MailflowExoAuthFailing api=token
route tickets alertname=SomethingElse

say "every alert has a severity, a summary, a description and a runbook_url"
n_alerts=$(grep -c '^ *- alert: ' "$rules")
for key in 'severity:' 'summary:' 'description:' 'runbook_url:'; do
  n=$(grep -c "^ *$key" "$rules")
  [ "$n" -eq "$n_alerts" ] || die "$n_alerts alerts but $n '$key' lines in $rules"
done
# The same count per alert: exactly one line of each key between one `- alert:` and the next
# rule or group (so one alert's two summaries cannot hide another's missing one).
per_alert=$(awk '
  function flush(  k) {
    if (name != "") for (k in want) if (seen[k] + 0 != 1) printf "%s has %d %s lines; ", name, seen[k] + 0, k
    name = ""; split("", seen)
  }
  BEGIN { want["severity:"]; want["summary:"]; want["description:"]; want["runbook_url:"] }
  /^ *- (alert|record|name): / { flush(); if ($2 == "alert:") name = $3; next }
  name != "" && ($1 in want) { seen[$1]++ }
  END { flush() }
' "$rules")
[ -z "$per_alert" ] || die "$per_alert"
echo "$n_alerts alerts, each with one of each"

say "every alert has a firing and a silent unit test"
# In the alert_rule_test cases of the *_test.yml files: a case with exp_alerts entries is a
# firing case, one without (or with exp_alerts: []) a silent case.
python3 - "$rules" "$alerts" <<'PY' || die "alerts without unit tests (see above)"
import glob, os, re, sys
rules, folder = sys.argv[1], sys.argv[2]
with open(rules, encoding="utf-8") as f:
    names = re.findall(r"^\s*- alert: (\S+)", f.read(), re.M)
firing, silent = set(), set()
for path in sorted(glob.glob(os.path.join(folder, "*_test.yml"))):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    case = None  # [alertname, has exp_alerts entries, indentation of its "- "]
    def close():
        if case and case[0]:
            (firing if case[1] else silent).add(case[0])
    for line in lines:
        inline = re.match(r"^\s*- \{(.*)\}\s*$", line)
        if inline and "alertname:" in inline.group(1):
            close(); case = None
            m = re.search(r"alertname:\s*(\w+)", inline.group(1))
            silent.add(m.group(1))
            continue
        block = re.match(r"^(\s*)- eval_time:", line)
        if block:
            close(); case = ["", False, len(block.group(1))]
            continue
        if case is None or not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= case[2]:
            close(); case = None
            continue
        m = re.match(r"^\s*alertname:\s*(\w+)", line)
        if m:
            case[0] = m.group(1)
        if re.match(r"^\s*- exp_labels:", line):
            case[1] = True
    close()
bad = [f"{n}: no {' and no '.join(w for w, s in (('firing case', firing), ('silent case', silent)) if n not in s)}"
       for n in names if n not in firing or n not in silent]
for b in bad:
    print(b, file=sys.stderr)
print(f"{len(names)} alerts, each with a firing and a silent case")
sys.exit(1 if bad else 0)
PY

say "one runbook base in the rules and the tests"
bases=$(grep -ho 'https\?://[^"[:space:]]*/\(docs/runbooks\|alerts/README\.md\)' "$alerts"/*.yml \
  | sed 's#/\(docs/runbooks\|alerts/README\.md\)$##' | sort -u)
[ "$(printf '%s\n' "$bases" | grep -c .)" -eq 1 ] || die "runbook_url bases disagree: $(echo $bases)"
declared=$(sed -n 's/^# *RUNBOOK_BASE = *//p' "$rules")
[ "$declared" = "$bases" ] || die "RUNBOOK_BASE in the header of $rules ($declared) is not the base the links use ($bases)"
echo "$bases"

say "per-code alerts: one per code of docs/codes.json, muted by MailflowConnectorDown, runbook present"
# docs/codes.json is the taxonomy of src/taxonomy.rs as data: code, per-code alert name, runbook path.
catalog=$(python3 - "$codes_json" <<'PY'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    doc = json.load(f)
for c in doc["codes"]:
    fields = [c["code"], c["alert"], c["runbook"]]
    if not all(isinstance(v, str) and v and not any(ch.isspace() for ch in v) for v in fields):
        sys.exit(f"bad entry: {fields!r}")
    print(*fields, sep="\t")
PY
) || die "cannot read the codes from $codes_json (regenerate: $regenerate)"
n_codes=$(printf '%s\n' "$catalog" | grep -c .) || true
[ "$n_codes" -gt 0 ] || die "no codes in $codes_json (regenerate: $regenerate)"

# Every alert of the rules file as: name TAB expr (on one line) TAB runbook_url (one-line form only).
rules_alerts=$(awk '
  function flush() { if (name != "") print name "\t" expr "\t" url; name = ""; expr = ""; url = ""; inexpr = 0 }
  function indent(s) { return match(s, /[^ ]/) }
  /^ *- (alert|record|name): / { flush(); if ($2 == "alert:") name = $3; next }
  name == "" { next }
  inexpr && (/^ *$/ || indent($0) > exprind) { line = $0; sub(/^ */, "", line); expr = expr " " line; next }
  { inexpr = 0 }
  /^ *expr:/ { inexpr = 1; exprind = indent($0); line = $0; sub(/^ *expr: */, "", line); expr = line; next }
  /^ *runbook_url:/ { line = $0; sub(/^ *runbook_url: */, "", line); gsub(/["\047]/, "", line); url = line; next }
  END { flush() }
' "$rules")
# The per-code alerts: those that select one code of the per-host recording rule, as: name TAB code.
per_code=$(printf '%s\n' "$rules_alerts" | awk -F'\t' '
  index($2, "connector_host_code_reason:mailflow_probe_failures:increase10m{") {
    # (the role join repeats the selector: count distinct codes)
    e = $2; n = 0; code = ""
    while (match(e, /(^|[^a-z_])code="[^"]*"/)) {
      m = substr(e, RSTART, RLENGTH); sub(/^.*code="/, "", m); sub(/"$/, "", m)
      if (m != code) { code = m; n++ }
      e = substr(e, RSTART + RLENGTH)
    }
    print $1 "\t" (n == 1 ? code : "?")
  }')
# The alert names the inhibit rule with source MailflowConnectorDown mutes (its alertname=~ list).
muted=$(awk '
  /^inhibit_rules:/ { on = 1; next }
  on && /^[^ #]/ { on = 0 }
  !on { next }
  /^  - / { src = 0; tgt = 0 }
  /source_matchers/ { tgt = 0 }
  /target_matchers/ { tgt = 1 }
  !tgt && /alertname *= *"?MailflowConnectorDown"?/ { src = 1 }
  src && tgt {
    line = $0
    while (match(line, /alertname=~"[^"]*"/)) {
      m = substr(line, RSTART + 12, RLENGTH - 13); n = split(m, a, "|")
      for (i = 1; i <= n; i++) print a[i]
      line = substr(line, RSTART + RLENGTH)
    }
  }' "$am_cfg")
[ -n "$muted" ] || die "no inhibit rule with source MailflowConnectorDown and an alertname=~ target in $am_cfg"
is_muted() { printf '%s\n' "$muted" | grep -qxF "$1"; }

while IFS=$'\t' read -r code alert runbook; do
  n=$(printf '%s\n' "$rules_alerts" | cut -f1 | grep -cxF "$alert") || true
  [ "$n" -eq 1 ] || die "$code: expected exactly one alert $alert in $rules, found $n"
  selects=$(printf '%s\n' "$per_code" | awk -F'\t' -v a="$alert" '$1 == a { print $2 }')
  [ "$selects" = "$code" ] \
    || die "$code: $alert must select connector_host_code_reason:mailflow_probe_failures:increase10m{code=\"$code\"}, its expr selects: ${selects:-no per-host code}"
  others=$(printf '%s\n' "$per_code" | awk -F'\t' -v c="$code" -v a="$alert" '$2 == c && $1 != a { print $1 }')
  [ -z "$others" ] || die "$code: per-code alerts other than $alert select it: $(echo $others)"
  is_muted "$alert" || die "$alert ($code) is missing from the MailflowConnectorDown inhibit rule in $am_cfg"
  [ -f "$repo/$runbook" ] || die "$code: $runbook is missing"
  url=$(printf '%s\n' "$rules_alerts" | awk -F'\t' -v a="$alert" '$1 == a { print $3 }')
  case "$url" in
    */"$runbook") ;;
    *) die "$alert ($code): runbook_url '$url' does not link to $runbook" ;;
  esac
  echo "$code -> $alert, inhibited, $runbook"
done <<<"$catalog"

# Per-code alerts for codes that docs/codes.json does not know.
known=$(printf '%s\n' "$catalog" | cut -f2)
while IFS=$'\t' read -r alert code; do
  [ -n "$alert" ] || continue
  printf '%s\n' "$known" | grep -qxF "$alert" \
    || die "$alert selects code ${code} of connector_host_code_reason:mailflow_probe_failures:increase10m but is no per-code alert of $codes_json"
done <<<"$per_code"
is_muted MailflowQueueAgeing || die "MailflowQueueAgeing is missing from the inhibit rule in $am_cfg"
is_muted MailflowExoMailHeld || die "MailflowExoMailHeld is missing from the inhibit rule in $am_cfg"
echo "$n_codes codes, $n_codes per-code alerts"

say "runbook links: every fixed runbook_url names a file of this repository, and its #anchor a heading"
# Templated links (the connector's current code) are checked above through docs/codes.json.
python3 - "$repo" "$bases" "$rules_alerts" <<'PY' || die "broken runbook links (see above)"
import os, re, sys
repo, base, rows = sys.argv[1], sys.argv[2], sys.argv[3]
def slug(heading):  # GitHub's anchor for a Markdown heading
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")
bad, n = [], 0
for row in rows.splitlines():
    name, _expr, url = (row.split("\t") + ["", ""])[:3]
    if not url.startswith(base + "/") or "{{" in url:
        continue
    n += 1
    path, _, anchor = url[len(base) + 1:].partition("#")
    full = os.path.join(repo, path)
    if not os.path.isfile(full):
        bad.append(f"{name}: {path} does not exist"); continue
    if anchor:
        with open(full, encoding="utf-8") as f:
            heads = {slug(m) for m in re.findall(r"^#{1,6} +(.*?) *#*$", f.read(), re.M)}
        if anchor not in heads:
            bad.append(f"{name}: {path} has no heading for #{anchor}")
for b in bad:
    print(b, file=sys.stderr)
print(f"{n - len(bad)} of {n} fixed links resolve")
sys.exit(1 if bad else 0)
PY

say "tenant and agent alerts: each inhibit rule the rule file relies on is in the Alertmanager example"
# source TAB target for every inhibit rule of $am_cfg (alertname="X" and alertname=~"A|B" matchers).
inhibit_pairs=$(python3 - "$am_cfg" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
section = text.split("\ninhibit_rules:", 1)[1] if "\ninhibit_rules:" in text else ""
section = re.split(r"\n(?=[^\s#])", section, maxsplit=1)[0]
def names(block):
    out = []
    for op, val in re.findall(r'alertname\s*(=~|=)\s*"([^"]*)"', block):
        out += val.split("|") if op == "=~" else [val]
    return out
for rule in re.split(r"\n  - ", section)[1:]:
    rule = "\n".join(l for l in rule.split("\n") if not l.lstrip().startswith("#"))
    src, _, tgt = rule.partition("target_matchers")
    for s in names(src):
        for t in names(tgt):
            print(f"{s}\t{t}")
PY
) || die "cannot read the inhibit rules of $am_cfg"
while read -r src tgt; do
  printf '%s\n' "$inhibit_pairs" | grep -qxF "$src"$'\t'"$tgt" || die "no inhibit rule in $am_cfg lets $src mute $tgt"
  echo "$src mutes $tgt"
done <<'PAIRS'
MailflowExoMailHeld MailflowQueueAgeing
MailflowExoMessagesNearExpiry MailflowMessagesExpiringSoon
MailflowExoAuthFailing MailflowExoDataStale
MailflowExoPermissionMissing MailflowExoDataStale
MailflowExoThrottled MailflowExoDataStale
MailflowExoAuthFailing MailflowExoSyncFailing
MailflowExoPermissionMissing MailflowExoSyncFailing
MailflowExoThrottled MailflowExoSyncFailing
MailflowAgentDnsUnreachable MailflowDnsQueryFailed
MailflowAgentDnsUnreachable MailflowConnectorDown
MailflowAgentOutboundPort25Blocked MailflowConnectionRefused
MailflowAgentOutboundPort25Blocked MailflowConnectionTimedOut
MailflowAgentOutboundPort25Blocked MailflowConnectorDown
MailflowManyConnectorsFailing MailflowConnectionRefused
MailflowManyConnectorsFailing MailflowConnectorDown
PAIRS

say "all alert checks passed"
