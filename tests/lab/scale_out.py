#!/usr/bin/env python3
"""Scale-out checks for the end-to-end lab, standard library only (run by tests/lab/scale_out.sh).

Two ways to spread the lab's connectors over agents, checked against the lab's own full agent:
1. agent-side sharding: agents started with --shard 0/2 and --shard 1/2 probe disjoint sets that
   together are every enabled connector (each connector probed by exactly one agent);
2. Prometheus-driven: a Prometheus whose two jobs stand for two Prometheus replicas, each keeping
   the `/probe?connector=` targets of its `hashmod` share and sending them to its own agent started
   with --probe.on-demand-only. Each replica's share must be exactly the same as the agent shard
   with the same index (same hash), every target must be up, the codes it scrapes must be the
   full agent's, and the on-demand agents must have probed nothing they were not asked for.

usage: scale_out.py FULL_AGENT SHARD0 SHARD1 ONDEMAND0 ONDEMAND1 PROMETHEUS
"""
import json
import sys
import time
import urllib.parse
import urllib.request

DEADLINE = 120


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def series(metrics_text, name):
    """{connector: value} of a per-connector family in Prometheus text."""
    out = {}
    for line in metrics_text.splitlines():
        if not line.startswith(name + "{"):
            continue
        labels, _, value = line.rpartition(" ")
        start = labels.find('connector="')
        if start < 0:
            continue
        rest = labels[start + len('connector="'):]
        # connector names in the lab have no quotes or backslashes
        out[rest[: rest.find('"')]] = float(value)
    return out


def prom(base, query):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    body = json.loads(get(url))
    if body.get("status") != "success":
        sys.exit(f"FAIL: {query}: {body}")
    return body["data"]["result"]


def wait(what, check):
    end = time.time() + DEADLINE
    last = None
    while time.time() < end:
        try:
            ok, last = check()
            if ok:
                return last
        except (OSError, ValueError) as e:
            last = repr(e)
        time.sleep(1)
    sys.exit(f"FAIL: {what} within {DEADLINE}s; last: {last}")


def main():
    full, s0, s1, p0, p1, prometheus = sys.argv[1:7]
    status = json.loads(get(full + "/api/status"))
    enabled = {c["connector"] for c in status if c["state"] != "disabled"}
    if len(enabled) < 10:
        sys.exit(f"FAIL: the full agent lists only {sorted(enabled)}")

    # 1. Agent-side shards: disjoint, complete, each connector probed by one agent.
    def shards_probed():
        a = series(get(s0 + "/metrics"), "mailflow_connector_up")
        b = series(get(s1 + "/metrics"), "mailflow_connector_up")
        return (set(a) | set(b)) >= enabled, (set(a), set(b))

    a, b = wait("both shards probed their share", shards_probed)
    if a & b:
        sys.exit(f"FAIL: probed by both shards: {sorted(a & b)}")
    if a | b != enabled:
        sys.exit(f"FAIL: shards cover {sorted(a | b)}, the lab has {sorted(enabled)}")
    if not a or not b:
        sys.exit(f"FAIL: one shard is empty: {sorted(a)} / {sorted(b)}")
    probes = [series(get(u + "/metrics"), "mailflow_probes_total") for u in (s0, s1)]
    for name in enabled:
        owners = [i for i, p in enumerate(probes) if any(k == name for k in p)]
        if len(owners) != 1:
            sys.exit(f"FAIL: {name} has probe counters on shards {owners}")
    print(f"shards: 0/2 probes {len(a)}, 1/2 probes {len(b)}, disjoint, together all {len(enabled)}")

    # 2. Prometheus-driven: each replica job keeps its hashmod share, sent to its own agent.
    def replicas_ready():
        kept = {}
        for job in ("probe-replica-0", "probe-replica-1"):
            r = prom(prometheus, f'up{{job="{job}"}}')
            kept[job] = {x["metric"]["instance"]: x["value"][1] for x in r}
        return all(len(v) > 0 and all(u == "1" for u in v.values()) for v in kept.values()) and (
            set(kept["probe-replica-0"]) | set(kept["probe-replica-1"])
        ) >= enabled, kept

    kept = wait("every /probe target up in its replica job", replicas_ready)
    r0, r1 = set(kept["probe-replica-0"]), set(kept["probe-replica-1"])
    if r0 & r1:
        sys.exit(f"FAIL: both Prometheus replicas keep {sorted(r0 & r1)}")
    if r0 != a or r1 != b:
        sys.exit(
            "FAIL: Prometheus' hashmod and the agent's --shard split differently:\n"
            f"  replica 0 {sorted(r0)}\n  shard 0/2 {sorted(a)}\n  replica 1 {sorted(r1)}\n  shard 1/2 {sorted(b)}"
        )
    print("Prometheus hashmod: each replica keeps exactly the connectors of the agent shard with its index")

    # The codes Prometheus scraped through /probe are the full agent's.
    # Re-read the full agent each time: a fault fixed just before this stage (the lab's
    # 127.0.0.17 fix) may reach the full agent's next probe after the on-demand ones.
    def codes_agree():
        now = {c["connector"]: c["code"] or "ok" for c in json.loads(get(full + "/api/status"))}
        bad = {}
        for job in ("probe-replica-0", "probe-replica-1"):
            for x in prom(prometheus, f'mailflow_connector_status{{job="{job}"}} == 1'):
                c, code = x["metric"]["connector"], x["metric"]["code"]
                if now.get(c) != code:
                    bad[c] = (code, now.get(c))
        return not bad, bad

    wait("the /probe codes match the full agent's", codes_agree)
    print("codes through /probe match the full agent's")

    # The on-demand agents probed exactly what their replica asked for, nothing on a schedule.
    for url, want in ((p0, r0), (p1, r1)):
        got = set(series(get(url + "/metrics"), "mailflow_connector_up"))
        if got != want:
            sys.exit(f"FAIL: on-demand agent {url} has results for {sorted(got)}, asked for {sorted(want)}")
    print("on-demand agents probed only what Prometheus asked for")
    print("scale-out checks passed")


if __name__ == "__main__":
    main()
