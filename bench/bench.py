#!/usr/bin/env python3
"""Drives the measurements of the agent against the loopback farm and writes the results table.

usage: bench.py [--quick] [--parts floor,agent,probe,detect] [--out DIR]
                [--agent PATH] [--blackbox PATH] [--prometheus PATH]

Everything runs on 127.0.0.0/8; every process it starts is stopped again. CPU is user+system
time from /proc/PID/stat of the process measured; ratios are taken between numbers measured in
this run, and each reported figure is the median of several interleaved rounds.
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TICK = os.sysconf("SC_CLK_TCK")
FARM_PORT = 2525
AGENT_PORT, PROBE_AGENT_PORT, DETECT_AGENT_PORT = 19425, 19426, 19427
BLACKBOX_PORT, PROMETHEUS_PORT = 19415, 19490
FARM_TLS = [f"127.0.1.{i}:{FARM_PORT}" for i in range(1, 17)]
FARM_PLAIN = [f"127.0.2.{i}:{FARM_PORT}" for i in range(1, 17)]
DETECT_TARGET = f"127.0.3.1:{FARM_PORT}"

# Sizes: (full, quick).
PLAN = {
    "floor_probes": (2000, 1000),
    "floor_rounds": (3, 2),
    "paced_probes": (250, 40),  # one paced round per mode, at the small runs' probe rate
    "small": (1000, 200),  # connectors of the CPU-per-probe runs
    "large": (10000, 2000),  # connectors of the memory and /metrics run
    "interval": (60, 10),  # seconds
    "warmup": (15, 4),
    "windows": (2, 1),  # intervals measured
    "scrapes": (5, 3),
    "requests": (2000, 200),  # /probe requests per block
    "probe_rounds": (5, 2),
    "detect_runs": (5, 1),
    "detect_interval": (10, 10),
}

GOALS = {  # key: (text, comparison, limit)
    "sched_tls_vs_floor": ("≤ 1.5× bare rustls loop", "<=", 1.5),
    "probe_tls_vs_blackbox": ("≤ 1/3 of blackbox_exporter", "<=", 1 / 3),
    "sched_plain_ms": ("≤ 0.1 ms", "<=", 0.1),
    "large_peak_rss_mib": ("≤ 64 MiB", "<=", 64),
    "large_metrics_s": ("≤ 50 ms", "<=", 0.050),
    "large_series_per_connector": ("≤ 25", "<=", 25),
}


def say(*a):
    print("[bench]", *a, flush=True)


# ---------------------------------------------------------------------------------------------
# processes


def cpu_seconds(pid):
    """user+system seconds of a process (all threads, living and exited)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICK


def proc_status(pid, field):
    """A kB field of /proc/PID/status (VmHWM, VmRSS) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


class Proc:
    """A child process whose output goes to a log file; stopped by pid, never by name."""

    def __init__(self, name, argv, workdir, wait_line=None):
        self.name, self.log = name, Path(workdir) / f"{name}.log"
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE if wait_line else open(self.log, "w"),
                                  stderr=open(Path(workdir) / f"{name}.err", "w"), text=True)
        if wait_line:
            line = self.p.stdout.readline()
            if line.strip() != wait_line:
                self.stop()
                raise RuntimeError(f"{name} did not start: {(Path(workdir) / f'{name}.err').read_text()[-2000:]}")

    @property
    def pid(self):
        return self.p.pid

    def cpu(self):
        return cpu_seconds(self.pid)

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def http_get(port, path, timeout=60):
    """(status, body bytes, seconds) of one GET on a fresh connection."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return r.status, body, time.perf_counter() - t0
    finally:
        c.close()


def wait_http(port, path, proc, what, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if proc.p.poll() is not None:
            raise RuntimeError(f"{what} exited: {Path(proc.log).with_suffix('.err').read_text()[-2000:]}")
        try:
            if http_get(port, path, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready on :{port}{path}")


# ---------------------------------------------------------------------------------------------
# the agent's metrics

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(body, name):
    """[(labels dict, value)] of one metric family in a text exposition."""
    out = []
    for line in body.decode().splitlines():
        if line.startswith(name) and not line.startswith("#"):
            m = SAMPLE.match(line)
            if m and m.group(1) == name:
                out.append((dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def series_count(body):
    return sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))


def series_by_family(body):
    """{family: series}, histograms' _bucket/_sum/_count counted under the family, largest first."""
    counts = {}
    for line in body.split(b"\n"):
        if line and not line.startswith(b"#"):
            name = re.sub(rb"_(bucket|sum|count)$", b"", re.split(rb"[{ ]", line, maxsplit=1)[0]).decode()
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


# ---------------------------------------------------------------------------------------------
# parts


def farm_start(tools, workdir, name, tls, plain=()):
    argv = [tools["farm"], "--pki", str(workdir / name)]
    argv += [x for a in tls for x in ("--tls", a)] + [x for a in plain for x in ("--plain", a)]
    return Proc(name, argv, workdir, wait_line="ready")


def floor_rounds(tools, ca, plan, results):
    """Back-to-back rounds of the bare loops, then one round paced at the small runs' rate."""
    rate = plan["small"] / plan["interval"]
    # Plain probes are cheap: five times as many, so a round is a long stretch of CPU.
    for mode, target, probes in (("tls", FARM_TLS[0], plan["floor_probes"]),
                                 ("plain", FARM_PLAIN[0], plan["floor_probes"] * 5)):
        for key, extra in (("floor", ["--probes", str(probes), "--rounds", str(plan["floor_rounds"])]),
                           ("floor_paced", ["--probes", str(plan["paced_probes"]), "--rounds", "1",
                                            "--rate", str(rate)])):
            out = subprocess.run([tools["floor"], "--target", target, "--mode", mode, "--ca", str(ca), *extra],
                                 check=True, capture_output=True, text=True).stdout
            results[key][mode] += [json.loads(line)["cpu_ms_per_probe"] for line in out.splitlines()]
    say(f"floor so far (ms/probe): back to back {results['floor']}, paced at {rate:g}/s {results['floor_paced']}")


def agent_config(path, ca, connectors, interval, timeout):
    lines = [f"defaults: {{ interval: {interval}s, timeout: {timeout}s, helo: probe.bench.test }}",
             f'trust: {{ extra_ca_files: ["{ca}"] }}', "connectors:"]
    for name, host, tls in connectors:
        ip, port = host.rsplit(":", 1)
        lines += [f"  - name: {name}", "    use_mx_record: false", f'    smart_hosts: ["{ip}"]', f"    port: {port}",
                  f"    tls_settings: {'certificate-validation' if tls else 'none'}"]
    path.write_text("\n".join(lines) + "\n")


def agent_start(tools, workdir, name, config, port, extra=()):
    store = workdir / f"{name}-data"
    store.mkdir(exist_ok=True)
    p = Proc(name, [tools["agent"], "serve", "--config.file", str(config), "--web.listen-address",
                    f"127.0.0.1:{port}", "--storage.path", str(store), "--log.level", "warn", *extra], workdir)
    wait_http(port, "/-/ready", p, name)
    return p


def agent_run(tools, workdir, farm, ca, name, n, tls, plan):
    """Scheduled probing of n connectors at the plan's interval; CPU, rate, lateness, RSS, /metrics."""
    interval = plan["interval"]
    targets = FARM_TLS if tls else FARM_PLAIN
    cfg = workdir / f"{name}.yaml"
    agent_config(cfg, ca, [(f"c{i:05d}", targets[i % len(targets)], tls) for i in range(n)],
                 interval, min(10, interval // 2))
    say(f"{name}: {n} {'STARTTLS' if tls else 'plain'} connectors, interval {interval}s")
    agent = agent_start(tools, workdir, name, cfg, AGENT_PORT)
    try:
        time.sleep(plan["warmup"])
        body0 = http_get(AGENT_PORT, "/metrics")[1]
        cpu0, farm0, t0 = agent.cpu(), farm.cpu(), time.time()
        time.sleep(interval * plan["windows"])
        cpu1, farm1, t1 = agent.cpu(), farm.cpu(), time.time()
        body1 = http_get(AGENT_PORT, "/metrics")[1]
        now = time.time()
        probes = sum(v for _, v in samples(body1, "mailflow_probes_total")) - \
            sum(v for _, v in samples(body0, "mailflow_probes_total"))
        failures = sum(v for _, v in samples(body1, "mailflow_probe_failures_total"))
        last = {lab["connector"]: v for lab, v in samples(body1, "mailflow_connector_last_probe_timestamp_seconds")}
        ages = [now - last.get(f"c{i:05d}", 0) for i in range(n)]
        # A probe is due every interval; a connector whose last probe is older was late.
        late = sum(1 for a in ages if a > interval * 1.05 + 1)
        missed = sum(1 for a in ages if a > interval * 2)
        scrape = []
        for _ in range(plan["scrapes"]):
            c0 = agent.cpu()
            _, body, secs = http_get(AGENT_PORT, "/metrics")
            scrape.append((secs, agent.cpu() - c0, len(body), series_count(body)))
        res = {
            "connectors": n, "tls": tls, "interval_s": interval, "window_s": round(t1 - t0, 2),
            "probes": probes, "failures_total": failures,
            "cpu_ms_per_probe": (cpu1 - cpu0) * 1000 / max(probes, 1),
            "farm_cpu_ms_per_probe": (farm1 - farm0) * 1000 / max(probes, 1),
            "probes_per_s": probes / (t1 - t0), "expected_probes_per_s": n / interval,
            "late": late, "missed": missed, "max_age_s": max(ages),
            "peak_rss_mib": proc_status(agent.pid, "VmHWM"), "rss_mib": proc_status(agent.pid, "VmRSS"),
            "metrics_s": statistics.median(s[0] for s in scrape),
            "metrics_cpu_s": statistics.median(s[1] for s in scrape),
            "metrics_bytes": scrape[-1][2], "metrics_series": scrape[-1][3],
            "series_per_connector": scrape[-1][3] / n,
            "series_by_family": series_by_family(body),
        }
    finally:
        agent.stop()
    say(f"{name}: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}))
    return res


BLACKBOX_CONFIG = """modules:
  smtp_starttls:
    prober: tcp
    timeout: 10s
    tcp:
      query_response:
        - expect: "^220"
        - send: "EHLO probe.bench.test\\r"
        - expect: "^250-STARTTLS"
        - expect: "^250 "
        - send: "STARTTLS\\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO probe.bench.test\\r"
        - expect: "^250 "
        - send: "QUIT\\r"
        - expect: "^221"
      tls_config:
        ca_file: "{ca}"
  smtp_plain:
    prober: tcp
    timeout: 10s
    tcp:
      query_response:
        - expect: "^220"
        - send: "EHLO probe.bench.test\\r"
        - expect: "^250 "
        - send: "QUIT\\r"
        - expect: "^221"
"""


def request_block(proc, port, path, n, ok):
    """n sequential GETs on one keep-alive connection; the process's CPU per request in ms."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    bad, cpu0 = 0, proc.cpu()
    for _ in range(n):
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200 or not ok(body):
            bad += 1
    cpu = proc.cpu() - cpu0
    conn.close()
    return cpu * 1000 / n, bad


def probe_loops(tools, workdir, farm, ca, plan, results):
    """/probe?connector= beside blackbox_exporter's /probe, same target, rounds A,B,A,B…"""
    cfg = workdir / "probe-agent.yaml"
    agent_config(cfg, ca, [("bench-tls", FARM_TLS[0], True), ("bench-plain", FARM_PLAIN[0], False)], 3600, 10)
    agent = agent_start(tools, workdir, "probe-agent", cfg, PROBE_AGENT_PORT, ("--web.probe-max-age", "0s"))
    (workdir / "blackbox.yml").write_text(BLACKBOX_CONFIG.format(ca=ca))
    bb = Proc("blackbox", [tools["blackbox"], "--config.file", str(workdir / "blackbox.yml"),
                           "--web.listen-address", f"127.0.0.1:{BLACKBOX_PORT}"], workdir)
    try:
        wait_http(BLACKBOX_PORT, "/-/healthy", bb, "blackbox_exporter")
        n = plan["requests"]
        agent_ok = lambda b: re.search(rb"^mailflow_connector_up\{[^}]*\} 1$", b, re.M) is not None
        bb_ok = lambda b: b"\nprobe_success 1" in b
        for mode, conn_name, module, target in (("tls", "bench-tls", "smtp_starttls", FARM_TLS[0]),
                                                ("plain", "bench-plain", "smtp_plain", FARM_PLAIN[0])):
            out = results["probe"][mode] = {"agent": [], "blackbox": [], "farm_agent": [], "farm_blackbox": [],
                                            "bad": 0, "agent_probes_per_request": []}
            for rnd in range(plan["probe_rounds"]):
                before = sum(v for _, v in samples(http_get(PROBE_AGENT_PORT, "/metrics")[1], "mailflow_probes_total"))
                f0 = farm.cpu()
                ms, bad = request_block(agent, PROBE_AGENT_PORT, f"/probe?connector={conn_name}", n, agent_ok)
                f1 = farm.cpu()
                after = sum(v for _, v in samples(http_get(PROBE_AGENT_PORT, "/metrics")[1], "mailflow_probes_total"))
                out["agent"].append(ms)
                out["farm_agent"].append((f1 - f0) * 1000 / n)
                out["agent_probes_per_request"].append((after - before) / n)
                out["bad"] += bad
                ms, bad = request_block(bb, BLACKBOX_PORT, f"/probe?module={module}&target={target}", n, bb_ok)
                out["blackbox"].append(ms)
                out["farm_blackbox"].append((farm.cpu() - f1) * 1000 / n)
                out["bad"] += bad
                say(f"/probe {mode} round {rnd}: agent {out['agent'][-1]:.3f} ms, "
                    f"blackbox {out['blackbox'][-1]:.3f} ms per request, failed responses {out['bad']}")
    finally:
        agent.stop()
        bb.stop()


PROMETHEUS_CONFIG = """global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files: ["{rules}/*.yml"]
scrape_configs:
  - job_name: mailflow-exporter
    static_configs: [{{ targets: ["127.0.0.1:{port}"] }}]
"""
ALERT_QUERY = 'ALERTS{alertname="MailflowConnectionRefused",alertstate="firing"}'
PROM_STEPS = {  # first time each query returns data after the port closed
    "scraped_failure": 'mailflow_probe_failures_total{connector="detect",code="4.4.316"}',
    "recording_rule": 'connector_host_code_reason:mailflow_probe_failures:increase10m{connector="detect",code="4.4.316"}',
    "pending": 'ALERTS{alertname="MailflowConnectionRefused",alertstate="pending"}',
    "firing": ALERT_QUERY,
}


def prom_query(q):
    from urllib.parse import quote
    try:
        status, body, _ = http_get(PROMETHEUS_PORT, "/api/v1/query?query=" + quote(q), timeout=5)
        return json.loads(body)["data"]["result"] if status == 200 else []
    except (OSError, ValueError, KeyError):
        return []


def detect_run(tools, workdir, run, plan, with_prometheus):
    """Close a healthy target's port; time until the agent says 4.4.316, and until the alert fires."""
    interval = plan["detect_interval"]
    d = workdir / f"detect{run}"
    shutil.rmtree(d, ignore_errors=True)  # a fresh Prometheus TSDB every run
    d.mkdir()
    farm = farm_start(tools, d, "farm", [DETECT_TARGET])
    ca = d / "farm" / "ca.pem"
    cfg = d / "agent.yaml"
    agent_config(cfg, ca, [("detect", DETECT_TARGET, True)], interval, 5)
    agent = agent_start(tools, d, "agent", cfg, DETECT_AGENT_PORT)
    prom = None
    status_re = re.compile(rb'^mailflow_connector_status\{connector="detect",code="4\.4\.316"\} 1$', re.M)
    ok_re = re.compile(rb'^mailflow_connector_status\{connector="detect",code="ok"\} 1$', re.M)
    try:
        if with_prometheus:
            (d / "prometheus.yml").write_text(PROMETHEUS_CONFIG.format(rules=d / "rules", port=DETECT_AGENT_PORT))
            subprocess.run([sys.executable, str(REPO / "tests/lab/fast_rules.py"), str(REPO / "alerts"),
                            str(d / "rules")], check=True, capture_output=True)
            prom = Proc("prometheus", [tools["prometheus"], "--config.file", str(d / "prometheus.yml"),
                                       "--storage.tsdb.path", str(d / "tsdb"),
                                       "--web.listen-address", f"127.0.0.1:{PROMETHEUS_PORT}"], d)
            wait_http(PROMETHEUS_PORT, "/-/ready", prom, "prometheus")
        end = time.time() + 4 * interval
        while not ok_re.search(http_get(DETECT_AGENT_PORT, "/metrics")[1]):
            if time.time() > end:
                raise RuntimeError("detect: the connector never became healthy")
            time.sleep(0.2)
        while prom and not prom_query('mailflow_probe_success{connector="detect"} == 1'):
            time.sleep(0.5)
        time.sleep(random.uniform(0, interval))  # close the port at a random phase of the schedule
        farm.stop(signal.SIGKILL)
        t0 = time.time()
        t_status = t_alert = None
        t_seen = {}  # Prometheus's steps on the way to the alert, for the README's explanation
        while time.time() < t0 + 180 and (t_status is None or (prom and t_alert is None)):
            if t_status is None and status_re.search(http_get(DETECT_AGENT_PORT, "/metrics")[1]):
                t_status = time.time() - t0
            for step, q in PROM_STEPS.items() if prom else ():
                if step not in t_seen and prom_query(q):
                    t_seen[step] = round(time.time() - t0, 2)
            t_alert = t_seen.get("firing")
            time.sleep(0.05 if t_status is None else 0.25)
        failed = sum(v for lab, v in samples(http_get(DETECT_AGENT_PORT, "/metrics")[1],
                                             "mailflow_probe_failures_total") if lab.get("code") == "4.4.316")
        diagnosis = {}
        if prom and t_alert is None:  # what Prometheus saw, for whoever reads the JSON
            for q in ('mailflow_probe_failures_total{connector="detect"}[10m]',
                      'mailflow_probe_success{connector="detect"}[3m]', 'ALERTS', 'up'):
                diagnosis[q] = prom_query(q)
            diagnosis["rules"] = json.loads(http_get(PROMETHEUS_PORT, "/api/v1/rules")[1])["data"]["groups"][0]
    finally:
        for p in (prom, agent, farm):
            if p:
                p.stop()
    say(f"detect run {run}: status after {t_status}s, alert after {t_alert}s ({failed:.0f} failed probes by then)")
    return {"status_s": t_status, "alert_s": t_alert, "failed_probes_at_alert": failed, "prometheus_steps_s": t_seen,
            **({"diagnosis": diagnosis} if diagnosis else {})}


COMPONENTS = [  # (component, regex on the symbol), first match wins
    ("kernel (syscalls, TCP, scheduler)", r"^\[k\]"),
    ("crypto: ring (ECDHE, signatures, hashes, AEAD)", r"ring|ecp_nistz|nistz256|fe_|fe4_|x25519|sha256|sha512|aes|gcm|chacha|poly1305|LIMBS|bn_|p256|p384|GFp"),
    ("malloc/free and mem* (libc)", r"malloc|free|_int_|realloc|calloc|mem(cpy|move|set|cmp)|tcache|arena"),
    ("webpki (chain verification)", r"webpki"),
    ("x509-parser / asn1 / der (the agent's certificate summary)", r"x509|asn1|der_parser|oid_registry|time::|ASN1"),
    ("rustls (handshake state machine, records)", r"rustls"),
    ("tokio (runtime, timers, I/O driver)", r"tokio|mio::"),
    ("mailflow_exporter (the agent's own code)", r"mailflow_exporter"),
    ("formatting, strings, collections (core/alloc)", r"fmt|core::|alloc::|String|btree|hashbrown|Vec"),
    ("hickory (DNS)", r"hickory"),
    ("serde", r"serde"),
]


def components(flat_report):
    """Sums a flat `perf report` (self time per symbol) by component."""
    totals = {}
    for line in flat_report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\[.\]\s+.*)$", line)
        if not m:
            continue
        name = next((c for c, rx in COMPONENTS if re.search(rx, m.group(2))), "other")
        totals[name] = totals.get(name, 0) + float(m.group(1))
    return sorted(totals.items(), key=lambda kv: -kv[1])


def profile(tools, workdir, plan, out_path):
    """perf profile of the agent probing STARTTLS connectors on schedule: where its CPU goes."""
    d = workdir / "profile"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    farm = farm_start(tools, d, "farm", FARM_TLS)
    n, interval = plan["large"] // 5, 10  # 200 (full) or 40 (quick) probes a second
    cfg = d / "agent.yaml"
    agent_config(cfg, d / "farm" / "ca.pem", [(f"c{i:05d}", FARM_TLS[i % 16], True) for i in range(n)], interval, 5)
    agent = agent_start(tools, d, "agent", cfg, AGENT_PORT)
    data, secs = d / "perf.data", (20 if plan["windows"] > 1 else 8)
    try:
        time.sleep(3)
        say(f"profile: perf record of the agent for {secs} s, {n / interval:.0f} STARTTLS probes a second")
        subprocess.run(["perf", "record", "-q", "-F", "1999", "--call-graph", "dwarf,16384", "-p", str(agent.pid),
                        "-o", str(data), "--", "sleep", str(secs)], check=True, capture_output=True)
    finally:
        agent.stop()
        farm.stop()
    report = ["perf report", "--stdio", "-i", str(data), "--percent-limit", "0.7", "-g", "none"]
    text = [f"# perf profile of the agent: {n} STARTTLS connectors at {interval} s, {secs} s sampled at 1999 Hz",
            "", "## self time by component (symbol name patterns, see COMPONENTS in bench.py)", ""]
    flat = subprocess.run(["perf", "report", "--stdio", "-i", str(data), "-g", "none", "--no-children", "--sort",
                           "symbol", "--percent-limit", "0"], capture_output=True, text=True).stdout
    text += [f"{pct:6.1f}%  {name}" for name, pct in components(flat)]
    text += ["", "## self time per symbol (--no-children)", ""]
    text += [subprocess.run(report[0].split() + report[1:] + ["--no-children", "--sort", "symbol"],
                            capture_output=True, text=True).stdout]
    text += ["## inclusive time per symbol (--children: the function and what it calls)", ""]
    text += [subprocess.run(report[0].split() + report[1:] + ["--children", "--sort", "symbol"],
                            capture_output=True, text=True).stdout]
    text += ["## self time per shared object (--sort dso)", ""]
    text += [subprocess.run(report[0].split() + report[1:] + ["--no-children", "--sort", "dso"],
                            capture_output=True, text=True).stdout]
    out_path.write_text("\n".join(text))
    say(f"profile written to {out_path}")


# ---------------------------------------------------------------------------------------------
# report


def machine():
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "loadavg_start": open("/proc/loadavg").read().split()[:3]}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def summarize(r):
    s = {"floor_tls_ms": med(r["floor"]["tls"]), "floor_plain_ms": med(r["floor"]["plain"]),
         "paced_tls_ms": med(r["floor_paced"]["tls"]), "paced_plain_ms": med(r["floor_paced"]["plain"])}
    a = r["agent"]
    if "small_tls" in a:
        s["sched_tls_ms"] = a["small_tls"]["cpu_ms_per_probe"]
        s["sched_tls_vs_floor"] = ratio(s["sched_tls_ms"], s["floor_tls_ms"])
        s["sched_tls_vs_paced"] = ratio(s["sched_tls_ms"], s["paced_tls_ms"])
    if "small_plain" in a:
        s["sched_plain_ms"] = a["small_plain"]["cpu_ms_per_probe"]
        s["sched_plain_vs_floor"] = ratio(s["sched_plain_ms"], s["floor_plain_ms"])
        s["sched_plain_vs_paced"] = ratio(s["sched_plain_ms"], s["paced_plain_ms"])
    if "large_tls" in a:
        big = a["large_tls"]
        s["large_tls_ms"] = big["cpu_ms_per_probe"]
        s["large_tls_vs_floor"] = ratio(s["large_tls_ms"], s["floor_tls_ms"])
        s["large_peak_rss_mib"] = big["peak_rss_mib"]
        s["large_metrics_s"] = big["metrics_s"]
        s["large_series_per_connector"] = big["series_per_connector"]
    for mode, p in r["probe"].items():
        s[f"probe_{mode}_agent_ms"], s[f"probe_{mode}_blackbox_ms"] = med(p["agent"]), med(p["blackbox"])
        # The ratio of each round (A and B measured back to back), then the median.
        s[f"probe_{mode}_vs_blackbox"] = med([x / y for x, y in zip(p["agent"], p["blackbox"]) if y])
    if r["detect"]:
        s["detect_status_s"] = med([x["status_s"] for x in r["detect"]])
        s["detect_status_max_s"] = max((x["status_s"] or 1e9) for x in r["detect"])
        s["detect_alert_s"] = med([x["alert_s"] for x in r["detect"]])
    return s


def verdict(key, value):
    text, op, limit = GOALS[key]
    if value is None:
        return text, "n/a"
    return text, "pass" if value <= limit else "FAIL"


def table(r, s, plan):
    def f(v, unit="", nd=3):
        return "n/a" if v is None else f"{v:.{nd}f}{unit}"

    def x(v, what, nd=2):
        return "n/a" if v is None else f"{v:.{nd}f}× {what}"
    rows = []

    def row(what, measured, key=None, ratio=None, goal=None):
        if key:
            goal, ok = verdict(key, s.get(key))
        else:
            ok = "info"
        rows.append(f"| {what} | {measured} | {goal or '—'} | {ratio or '—'} | {ok} |")

    a = r["agent"]
    if "sched_tls_ms" in s:
        small = a["small_tls"]
        row(f"CPU per STARTTLS probe, `serve`, {small['connectors']} connectors",
            f"{f(s['sched_tls_ms'])} ms (bare rustls loop {f(s['floor_tls_ms'])} ms)", "sched_tls_vs_floor",
            x(s["sched_tls_vs_floor"], "floor"))
    if "probe_tls_agent_ms" in s:
        row("CPU per STARTTLS probe, `/probe?connector=`",
            f"{f(s['probe_tls_agent_ms'])} ms (blackbox_exporter {f(s['probe_tls_blackbox_ms'])} ms)",
            "probe_tls_vs_blackbox", x(s["probe_tls_vs_blackbox"], "blackbox"))
    if "sched_plain_ms" in s:
        row(f"CPU per plain SMTP probe, `serve`, {a['small_plain']['connectors']} connectors",
            f"{f(s['sched_plain_ms'])} ms (bare loop {f(s['floor_plain_ms'])} ms)", "sched_plain_ms",
            x(s["sched_plain_vs_floor"], "floor", 1))
    if s["paced_tls_ms"] is not None:
        rate = plan["small"] / plan["interval"]
        row(f"bare loops paced at {rate:.1f} probes/s, the small runs' rate (cold caches, a wake-up per probe)",
            f"STARTTLS {f(s['paced_tls_ms'])} ms, plain {f(s['paced_plain_ms'])} ms",
            ratio=f"agent: {x(s.get('sched_tls_vs_paced'), 'paced')} STARTTLS, "
                  f"{x(s.get('sched_plain_vs_paced'), 'paced')} plain")
    if "large_tls" in a:
        big = a["large_tls"]
        n = big["connectors"]
        row(f"peak RSS, {n} connectors, {big['interval_s']} s interval", f"{f(s['large_peak_rss_mib'], ' MiB', 1)}",
            "large_peak_rss_mib", x(s["large_peak_rss_mib"] / 64, "goal", 1))
        row(f"`/metrics` at {n} connectors: time (median of {plan['scrapes']})", f"{f(s['large_metrics_s'] * 1000, ' ms', 1)}",
            "large_metrics_s", x(s["large_metrics_s"] / 0.05, "goal", 1))
        row(f"`/metrics` at {n} connectors: series per connector",
            f"{s['large_series_per_connector']:.1f} ({big['metrics_series']} series, {big['metrics_bytes'] / 1e6:.1f} MB)",
            "large_series_per_connector", x(s["large_series_per_connector"] / 25, "goal", 1))
    if "probe_plain_agent_ms" in s:
        row("CPU per plain probe, `/probe?connector=`",
            f"{f(s['probe_plain_agent_ms'])} ms (blackbox_exporter {f(s['probe_plain_blackbox_ms'])} ms)",
            ratio=x(s["probe_plain_vs_blackbox"], "blackbox"))
    for key, res in a.items():
        row(f"`{key}`: probes/s achieved vs expected; late / missed connectors",
            f"{res['probes_per_s']:.1f} / {res['expected_probes_per_s']:.1f}; {res['late']} / {res['missed']}"
            f" of {res['connectors']} (oldest last probe {res['max_age_s']:.1f} s)",
            ratio=f"{res['probes_per_s'] / res['expected_probes_per_s']:.2f}")
        row(f"`{key}`: farm CPU per probe (is the farm a bottleneck?)", f"{f(res['farm_cpu_ms_per_probe'])} ms")
    if "large_tls" in a:
        row("CPU per STARTTLS probe, `serve`, large run", f"{f(s['large_tls_ms'])} ms",
            ratio=x(s["large_tls_vs_floor"], "floor"))
    if r["detect"]:
        iv = plan["detect_interval"]
        runs = len(r["detect"])
        rows.append(f"| time to detect: port closed → `mailflow_connector_status{{code=\"4.4.316\"}} 1`, "
                    f"interval {iv} s, median of {runs} | {f(s['detect_status_s'], ' s', 1)} (max {f(s['detect_status_max_s'], ' s', 1)}) "
                    f"| ≤ {iv} s interval + 5 s probe deadline | — | "
                    f"{'pass' if s['detect_status_max_s'] <= iv + 5 else 'FAIL'} |")
        if s.get("detect_alert_s") is not None:
            row(f"time to alert: port closed → `{ALERT_QUERY}` (Prometheus scrape and evaluation 5 s, "
                f"`for:` shortened to 4s), median of {runs}", f"{f(s['detect_alert_s'], ' s', 1)}")
    head = ["| measurement | this run | goal | ratio | verdict |", "|---|---|---|---|---|"]
    return "\n".join(head + rows)


def main_farm(tools, workdir, parts, plan, r):
    """The floor, the scheduled runs and the /probe loops, all against one farm."""
    farm = farm_start(tools, workdir, "farm", FARM_TLS, FARM_PLAIN)
    ca = workdir / "farm" / "ca.pem"
    try:
        cpu_farm0 = farm.cpu()
        runs = [("small_tls", plan["small"], True), ("small_plain", plan["small"], False),
                ("large_tls", plan["large"], True)] if "agent" in parts else []
        if "floor" in parts:
            floor_rounds(tools, ca, plan, r)
        for name, n, tls in runs:
            r["agent"][name] = agent_run(tools, workdir, farm, ca, name, n, tls, plan)
            if "floor" in parts:  # floor rounds between the runs: the same machine state
                floor_rounds(tools, ca, plan, r)
        if "probe" in parts:
            if os.access(tools["blackbox"], os.X_OK):
                probe_loops(tools, workdir, farm, ca, plan, r)
            else:
                say(f"{tools['blackbox']} missing: /probe comparison skipped")
        r["farm"] = {"cpu_s_total": farm.cpu() - cpu_farm0, "peak_rss_mib": proc_status(farm.pid, "VmHWM")}
    finally:
        farm.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run (≤ 3 minutes)")
    ap.add_argument("--parts", default="floor,agent,probe,detect",
                    help="comma-separated: floor, agent, probe, detect, profile (perf; not in the default)")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--workdir", help="keep configs, logs and data here (default: a temporary directory, removed)")
    ap.add_argument("--agent", default=str(REPO / "target/release/mailflow-exporter"))
    ap.add_argument("--blackbox", default="/usr/bin/prometheus-blackbox-exporter")
    ap.add_argument("--prometheus", default="/usr/bin/prometheus")
    args = ap.parse_args()
    plan = {k: v[1 if args.quick else 0] for k, v in PLAN.items()}
    parts = set(args.parts.split(","))
    tools = {"agent": args.agent, "blackbox": args.blackbox, "prometheus": args.prometheus,
             "farm": str(HERE / "target/release/farm"), "floor": str(HERE / "target/release/floor")}
    for t in ("agent", "farm", "floor"):
        if not os.access(tools[t], os.X_OK):
            sys.exit(f"{tools[t]} missing: build it first (bench/run.sh does)")
    started = datetime.datetime.now(datetime.timezone.utc)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = started.strftime("%Y-%m-%d-%H%M") + ("-quick" if args.quick else "")
    r = {"quick": args.quick, "plan": plan, "machine": machine(), "started": started.isoformat(),
         "floor": {"tls": [], "plain": []},
         "floor_paced": {"tls": [], "plain": []}, "agent": {}, "probe": {}, "detect": [], "farm": {}}
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if parts & {"floor", "agent", "probe"}:
            main_farm(tools, workdir, parts, plan, r)
        if "detect" in parts:
            with_prom = os.access(tools["prometheus"], os.X_OK)
            if not with_prom:
                say("prometheus missing: time to alert not measured")
            for run in range(plan["detect_runs"]):
                # One failed run (e.g. another job killed its Prometheus) must not lose the
                # whole run's results: it is reported and left out.
                try:
                    r["detect"].append(detect_run(tools, workdir, run, plan, with_prom))
                except (OSError, RuntimeError, ValueError, KeyError) as e:
                    say(f"detect run {run} failed, left out: {e!r}")
                    r.setdefault("detect_failed", []).append(repr(e))
        if "profile" in parts:
            if shutil.which("perf"):
                profile(tools, workdir, plan, out / f"{stem}-profile.txt")
            else:
                say("perf missing: profile skipped")
    r["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    r["summary"] = s = summarize(r)
    r["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat()

    m = r["machine"]
    md = [f"# mailflow-exporter bench, {started:%Y-%m-%d %H:%M} UTC{' (QUICK smoke run: sizes cut down)' if args.quick else ''}",
          "", f"Machine: {m['nproc']} CPUs, {m['cpu']}, kernel {m['kernel']}, load average "
          f"{' '.join(m['loadavg_start'])} at start, {' '.join(m['loadavg_end'])} at end. "
          f"Agent: `{args.agent}`. Raw numbers: `{stem}.json`.", "",
          table(r, s, plan), ""]
    if "large_tls" in r["agent"]:
        big = r["agent"]["large_tls"]
        md += ["Series per STARTTLS connector by family (large run): " + ", ".join(
            f"`{k}` {v / big['connectors']:.1f}" for k, v in big["series_by_family"].items() if v >= big["connectors"]), ""]
    if r["farm"]:
        md += [f"Farm CPU over the farm's whole life: {r['farm']['cpu_s_total']:.1f} s; its peak RSS "
               f"{r['farm']['peak_rss_mib']:.1f} MiB.", ""]
    if r["detect"] and r["detect"][0]["prometheus_steps_s"]:
        md += ["Time to alert, step by step (seconds after the port closed; per run):", ""]
        md += [f"* run {i}: agent status {x['status_s']:.1f}, " + ", ".join(f"{k} {v}" for k, v in x["prometheus_steps_s"].items())
               + f"; {x['failed_probes_at_alert']:.0f} failed probes by then" for i, x in enumerate(r["detect"])]
        md += [""]
    (out / f"{stem}.md").write_text("\n".join(md))
    (out / f"{stem}.json").write_text(json.dumps(r, indent=1) + "\n")
    print("\n".join(md))
    say(f"wrote {out / (stem + '.md')} and {stem}.json")


if __name__ == "__main__":
    main()
