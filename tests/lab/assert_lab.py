#!/usr/bin/env python3
"""Assertions for the end-to-end lab, standard library only.

Waits for the agent, Prometheus and Alertmanager to do their work and checks that every injected
fault's alert reaches the webhook with the right code, that nothing fires for the healthy
connectors, and (phase "resolve") that a fixed fault resolves.

The codes, their reasons and each code's per-code alert come from docs/codes.json (the taxonomy
of src/taxonomy.rs as data); the scenario table below is checked against it before anything else.

usage: assert_lab.py fire|resolve WEBHOOK_LOG
       assert_lab.py --self-check        only check the tables against docs/codes.json
"""
import json
import os
import sys
import time
import urllib.parse
import urllib.request

PROM = "http://127.0.0.1:19090"
AGENT = "http://127.0.0.1:19325"

# connector -> (code, reason) the agent must report, and the alert that must reach the webhook.
FAULTS = {
    "DNS NXDOMAIN": ("4.4.312", "nxdomain"),
    "DNS SERVFAIL": ("4.4.312", "servfail"),
    "DNS timeout": ("4.4.312", "dns_timeout"),
    "Null MX": ("4.4.312", "null_mx"),
    "Blackhole": ("4.4.315", "connect_timeout"),
    "Refused": ("4.4.316", "refused"),
    "Busy 421": ("4.4.317", "banner_rejected"),
    "No STARTTLS": ("4.4.317", "starttls_not_offered"),
    "Hang-up": ("4.4.318", "closed"),
    "Expired certificate": ("4.7.320", "cert_expired"),
    "Wrong name": ("4.7.320", "cert_name_mismatch"),
    "Self-signed": ("4.7.320", "cert_untrusted"),
    "Odd reply": ("other", "unexpected_reply"),
}
HEALTHY = ["Healthy", "Healthy by MX", "Expiring soon"]

# Exchange Online's view (the fake tenant, tests/lab/tenant.json): alert -> connectors it must
# reach the webhook for. Firewalled delivers to the probe while Microsoft holds its mail; the
# queue for Busy 421 is about to expire. (Microsoft's queue alert for Refused is muted by
# MailflowConnectorDown, as the Alertmanager example configures.)
TENANT_ALERTS = {
    "MailflowExoMailHeld": ["Firewalled"],
    "MailflowVantageMismatch": ["Firewalled"],
    "MailflowExoMessagesNearExpiry": ["Busy 421"],
}

# The fault that the lab fixes between the "fire" and the "resolve" phase.
RESOLVED = "Refused"

CODES_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "codes.json")
REGENERATE = "cargo run -q -- codes --output json > docs/codes.json"


def load_catalog(path=CODES_JSON):
    """docs/codes.json as {code: (per-code alert name, {reason, ...})}. Exits on a bad file."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        return {c["code"]: (c["alert"], {r["reason"] for r in c["reasons"]}) for c in doc["codes"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"FAIL: cannot read the taxonomy from {path} ({e!r}); regenerate it with `{REGENERATE}`")


def alert_for_code(catalog):
    """The per-code alert of alerts/mailflow.rules.yml for each code (MailflowConnectorDown also
    carries a code label, so the checks name the alert too)."""
    return {code: alert for code, (alert, _) in catalog.items()}


def table_problems(catalog, faults=None, healthy=None, resolved=None):
    """Everything in the scenario tables that disagrees with the taxonomy, as messages."""
    faults = FAULTS if faults is None else faults
    healthy = HEALTHY if healthy is None else healthy
    resolved = RESOLVED if resolved is None else resolved
    known_reasons = {r: code for code, (_, reasons) in catalog.items() for r in reasons}
    problems = []
    for connector, (code, reason) in faults.items():
        if code not in catalog:
            problems.append(f"{connector!r}: code {code!r} is not in docs/codes.json")
        if reason not in known_reasons:
            problems.append(f"{connector!r}: reason {reason!r} is not in docs/codes.json")
        elif known_reasons[reason] != code:
            problems.append(f"{connector!r}: reason {reason!r} belongs to {known_reasons[reason]}, not {code}")
    for connector in set(healthy) & set(faults):
        problems.append(f"{connector!r} is both a fault and healthy")
    for alert, connectors in TENANT_ALERTS.items():
        for connector in set(connectors) & set(healthy):
            problems.append(f"{connector!r} expects {alert} but is listed as healthy")
    if resolved not in faults:
        problems.append(f"the fault fixed for the resolve phase ({resolved!r}) is not in FAULTS")
    return problems


def checked_catalog(path=CODES_JSON):
    """load_catalog, after checking the scenario tables against it (exits loudly on any problem)."""
    catalog = load_catalog(path)
    problems = table_problems(catalog)
    if problems:
        sys.exit("FAIL: the lab's scenario table disagrees with docs/codes.json:\n  " + "\n  ".join(problems))
    return catalog


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def prom_query(q):
    doc = json.loads(get(f"{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": q})))
    if doc.get("status") != "success":
        raise RuntimeError(f"query failed: {q}: {doc}")
    return doc["data"]["result"]


def notifications(path):
    alerts = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                alerts.extend(doc.get("alerts", []))
    except FileNotFoundError:
        pass
    return alerts


def wait(what, check, deadline_s):
    end = time.time() + deadline_s
    last = None
    while time.time() < end:
        try:
            last = check()
            if last is True:
                print(f"ok: {what}", flush=True)
                return
        except Exception as e:  # keep polling: services may still be starting
            last = repr(e)
        time.sleep(1)
    sys.exit(f"FAIL: {what} (last: {last})")


def fire(log, alert_for):
    # 1. The agent itself classifies every fault as expected.
    def agent_codes():
        rows = json.loads(get(f"{AGENT}/api/status"))
        got = {r["connector"]: (r["code"], r["reason"]) for r in rows}
        wrong = {k: got.get(k) for k, v in FAULTS.items() if got.get(k) != v}
        wrong.update({k: got.get(k) for k in HEALTHY if got.get(k) != (None, None)})
        return True if not wrong else f"not yet/wrong: {wrong}"

    wait("agent reports every injected fault with its code and reason", agent_codes, 90)

    # 2. Prometheus sees the state set.
    def prom_state():
        res = prom_query('mailflow_connector_status == 1')
        got = {r["metric"]["connector"]: r["metric"]["code"] for r in res}
        wrong = {k: got.get(k) for k, (code, _) in FAULTS.items() if got.get(k) != code}
        return True if not wrong else f"not yet/wrong: {wrong}"

    wait("Prometheus scraped the status of every connector", prom_state, 60)

    # 3. Every fault's per-code alert reached the webhook, with its code and connector.
    def delivered():
        firing = {(a["labels"].get("alertname"), a["labels"].get("connector"), a["labels"].get("code"),
                   a["labels"].get("reason"))
                  for a in notifications(log) if a.get("status") == "firing"}
        missing = [(alert_for[c], k, c, r) for k, (c, r) in FAULTS.items()
                   if (alert_for[c], k, c, r) not in firing]
        return True if not missing else f"missing: {missing}"

    wait("the per-code alert for each injected fault reached the webhook with its code and reason", delivered, 120)

    # 4. A certificate about to expire on a delivering connector is alerted on, too.
    def cert_soon():
        names = {a["labels"].get("alertname") for a in notifications(log)
                 if a["labels"].get("connector") == "Expiring soon" and a.get("status") == "firing"}
        return True if any("Certificate" in (n or "") for n in names) else f"got {names}"

    wait("certificate-expiry alert for the connector whose certificate ends in 5 days", cert_soon, 60)

    # 5. Exchange Online's view: Microsoft's queue, the mismatch, the migrated case.
    def tenant_alerts():
        firing = {(a["labels"].get("alertname"), a["labels"].get("connector"))
                  for a in notifications(log) if a.get("status") == "firing"}
        missing = [(n, c) for n, cs in TENANT_ALERTS.items() for c in cs if (n, c) not in firing]
        return True if not missing else f"missing: {missing}"

    wait("Microsoft's queue, near-expiry and vantage-mismatch alerts reached the webhook", tenant_alerts, 180)

    def tenant_page():
        rows = {r["connector"]: r for r in json.loads(get(f"{AGENT}/api/status"))}
        fw, ref = rows.get("Firewalled", {}), rows.get("Refused", {})
        ok = (fw.get("vantage_mismatch") is True and (fw.get("microsoft") or {}).get("held") == 3
              and "Set-AcceptedDomain" in (ref.get("migrated_fix") or ""))
        return True if ok else f"Firewalled {fw.get('microsoft')}, Refused fix {ref.get('migrated_fix')}"

    wait("the status data shows both views, the mismatch and the migrated-tenant fix", tenant_page, 60)

    # 6. Nothing was ever sent about the healthy connectors' delivery.
    assert_quiet(log)


def assert_quiet(log):
    # The healthy connectors get nothing at all; the one with a 5-day certificate only that alert.
    noisy = [a for a in notifications(log) if a["labels"].get("connector") in HEALTHY
             and not (a["labels"].get("connector") == "Expiring soon"
                      and a["labels"].get("alertname", "").startswith("MailflowCertificateExpires"))]
    if noisy:
        sys.exit(f"FAIL: alerts fired for healthy connectors: {[a['labels'] for a in noisy]}")
    print("ok: nothing fired for the healthy connectors", flush=True)


def resolve(log, alert_for):
    def resolved():
        for a in notifications(log):
            if (a["labels"].get("alertname") == alert_for[FAULTS[RESOLVED][0]]
                    and a["labels"].get("connector") == RESOLVED and a.get("status") == "resolved"):
                return True
        return "no resolved notification yet"

    wait(f"the fixed fault ({RESOLVED}) resolved at the webhook", resolved, 120)
    # Checked again at the end, after every alert had time to fire.
    assert_quiet(log)


def main(argv):
    if argv == ["--self-check"]:
        catalog = checked_catalog()
        untested = sorted(set(catalog) - {code for code, _ in FAULTS.values()})
        if untested:
            print(f"note: no lab scenario for {untested}", file=sys.stderr)
        print(f"ok: {len(FAULTS)} faults and {len(HEALTHY)} healthy connectors agree with docs/codes.json "
              f"({len(catalog)} codes)")
        return 0
    if len(argv) != 2 or argv[0] not in ("fire", "resolve"):
        sys.exit("usage: assert_lab.py fire|resolve WEBHOOK_LOG\n       assert_lab.py --self-check")
    alert_for = alert_for_code(checked_catalog())
    {"fire": fire, "resolve": resolve}[argv[0]](argv[1], alert_for)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
