#!/usr/bin/env python3
"""Assertions for the end-to-end lab, standard library only.

Waits for the agent, Prometheus and Alertmanager to do their work and checks that every injected
fault's alert reaches the webhook with the right code, that nothing fires for the healthy
connectors, and (phase "resolve") that a fixed fault resolves.

usage: assert_lab.py fire|resolve WEBHOOK_LOG
"""
import json
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

# The per-code alert of alerts/mailflow.rules.yml for each code (MailflowConnectorDown also
# carries a code label, so the check names the alert too).
ALERT_FOR_CODE = {
    "4.4.312": "MailflowDnsQueryFailed",
    "4.4.315": "MailflowConnectionTimedOut",
    "4.4.316": "MailflowConnectionRefused",
    "4.4.317": "MailflowCannotConnect",
    "4.4.318": "MailflowConnectionClosedAbruptly",
    "4.7.320": "MailflowCertificateValidationFailed",
    "other": "MailflowOtherDeliveryFailure",
}


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


def fire(log):
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
        missing = [(ALERT_FOR_CODE[c], k, c, r) for k, (c, r) in FAULTS.items()
                   if (ALERT_FOR_CODE[c], k, c, r) not in firing]
        return True if not missing else f"missing: {missing}"

    wait("the per-code alert for each injected fault reached the webhook with its code and reason", delivered, 120)

    # 4. A certificate about to expire on a delivering connector is alerted on, too.
    def cert_soon():
        names = {a["labels"].get("alertname") for a in notifications(log)
                 if a["labels"].get("connector") == "Expiring soon" and a.get("status") == "firing"}
        return True if any("Certificate" in (n or "") for n in names) else f"got {names}"

    wait("certificate-expiry alert for the connector whose certificate ends in 5 days", cert_soon, 60)

    # 5. Nothing was ever sent about the healthy connectors' delivery.
    assert_quiet(log)


def assert_quiet(log):
    # The healthy connectors get nothing at all; the one with a 5-day certificate only that alert.
    noisy = [a for a in notifications(log) if a["labels"].get("connector") in HEALTHY
             and not (a["labels"].get("connector") == "Expiring soon"
                      and a["labels"].get("alertname", "").startswith("MailflowCertificateExpires"))]
    if noisy:
        sys.exit(f"FAIL: alerts fired for healthy connectors: {[a['labels'] for a in noisy]}")
    print("ok: nothing fired for the healthy connectors", flush=True)


def resolve(log):
    def resolved():
        for a in notifications(log):
            if (a["labels"].get("alertname") == ALERT_FOR_CODE["4.4.316"]
                    and a["labels"].get("connector") == "Refused" and a.get("status") == "resolved"):
                return True
        return "no resolved notification yet"

    wait("the fixed fault (Refused) resolved at the webhook", resolved, 120)
    # Checked again at the end, after every alert had time to fire.
    assert_quiet(log)


if __name__ == "__main__":
    {"fire": fire, "resolve": resolve}[sys.argv[1]](sys.argv[2])
