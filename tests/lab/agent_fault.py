#!/usr/bin/env python3
"""Agent-fault checks for the end-to-end lab, standard library only (run by agent_fault.sh).

One fault of the agent itself (its resolver is gone) on two full replicas must page once:
1. both replicas report the fault in their own metric (mailflow_self_check_successful dns 0);
2. Prometheus fires the agent alert for each replica *and* the per-connector alerts the fault
   causes (so it is Alertmanager's inhibition, not their absence, that keeps them quiet);
3. the webhook receives MailflowAgentDnsUnreachable, and nothing else, as one alert (the
   replicas' copies are one label set once Prometheus drops instance/replica), and after the
   per-connector alerts have had time to be sent, still nothing else.

usage: agent_fault.py PROMETHEUS WEBHOOK_LOG REPLICA_URL...
"""
import json
import sys
import time
import urllib.parse
import urllib.request

DEADLINE = 150
AGENT_ALERT = "MailflowAgentDnsUnreachable"
CAUSED = ("MailflowDnsQueryFailed", "MailflowConnectorDown")


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def prom(base, query):
    body = json.loads(get(base + "/api/v1/query?" + urllib.parse.urlencode({"query": query})))
    if body.get("status") != "success":
        sys.exit(f"FAIL: {query}: {body}")
    return body["data"]["result"]


def notifications(path):
    alerts = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                alerts.extend(json.loads(line).get("alerts", []))
    except FileNotFoundError:
        pass
    return alerts


def wait(what, check, deadline=DEADLINE):
    end = time.time() + deadline
    last = None
    while time.time() < end:
        try:
            ok, last = check()
            if ok:
                return last
        except (OSError, ValueError) as e:
            last = repr(e)
        time.sleep(1)
    sys.exit(f"FAIL: {what} within {deadline}s; last: {last}")


def main():
    prometheus, log, replicas = sys.argv[1], sys.argv[2], sys.argv[3:]

    def self_check_failed():
        seen = {}
        for r in replicas:
            text = get(r + "/metrics")
            seen[r] = 'mailflow_self_check_successful{check="dns"} 0' in text
        return all(seen.values()), seen

    wait("both replicas report their resolver down", self_check_failed)
    print(f"both replicas: mailflow_self_check_successful{{check=\"dns\"}} 0")

    def firing():
        rows = prom(prometheus, 'ALERTS{alertstate="firing"}')
        names = {}
        for x in rows:
            names.setdefault(x["metric"]["alertname"], set()).add(x["metric"].get("instance", ""))
        ok = len(names.get(AGENT_ALERT, ())) == len(replicas) and all(n in names for n in CAUSED)
        return ok, {k: sorted(v) for k, v in names.items()}

    names = wait(f"{AGENT_ALERT} for each replica and the alerts it causes, firing in Prometheus", firing)
    print(f"firing in Prometheus: {names}")

    def paged():
        got = notifications(log)
        return any(a["labels"].get("alertname") == AGENT_ALERT and a["status"] == "firing" for a in got), len(got)

    wait(f"{AGENT_ALERT} at the webhook", paged)
    # The caused alerts were firing before the agent alert reached the webhook; give Alertmanager
    # several group intervals (2 s in the lab) to send anything it would send.
    time.sleep(15)
    got = notifications(log)
    others = sorted({a["labels"].get("alertname", "?") for a in got} - {AGENT_ALERT})
    if others:
        sys.exit(f"FAIL: besides {AGENT_ALERT} the webhook got {others}: the agent's fault paged per connector")
    sent = 0
    with open(log, encoding="utf-8") as f:
        sent = sum(1 for line in f if line.strip())
    if sent != 1:
        sys.exit(f"FAIL: {sent} notifications reached the webhook for one fault (one page expected)")
    copies = {json.dumps(a["labels"], sort_keys=True) for a in got if a["status"] == "firing"}
    if len(copies) != 1:
        sys.exit(f"FAIL: {len(copies)} different {AGENT_ALERT} alerts reached the webhook (one per replica?):\n"
                 + "\n".join(sorted(copies)))
    print(f"one page: {AGENT_ALERT} once ({len(got)} notification(s), one label set), "
          f"{sorted(set(names) - {AGENT_ALERT})} inhibited")


if __name__ == "__main__":
    main()
