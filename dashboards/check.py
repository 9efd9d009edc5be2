#!/usr/bin/env python3
"""Checks the Grafana dashboards in this folder (Python 3 standard library only).

    python3 dashboards/check.py                      structure checks (exit 1 on any problem)
    python3 dashboards/check.py --list-exprs         print every PromQL expression, one JSON object a line
    python3 dashboards/check.py --prometheus URL     also run every expression against a Prometheus that
                                                     scrapes a running agent: each must evaluate without
                                                     error and return data (expressions on the tenant
                                                     metrics may be empty, unless --require-tenant-data)

Structure checks: every dashboard parses, has its stable uid (unique), schemaVersion 39, the tags,
the `datasource`, `job`, `instance` and `connector` variables (every series selector filtered on
`job=~"$job"`), links to the other dashboards; no datasource
other than `${datasource}` anywhere (no hard-coded uid); every panel has a description and a unit
(text and row panels excepted), every target a PromQL `expr` that only uses defined variables; a
panel that queries the tenant metrics (mailflow_exo_*, mailflow_connector_vantage_mismatch, exported
only with a `tenant:` section) says so in its description; and the code titles, causes, fix texts
and reason texts shown in the dashboards are exactly the ones in docs/codes.json (generated from
src/taxonomy.rs).

With --prometheus the Grafana variables are replaced as Grafana would for "All": `$job` -> the first
job the variable lists, `$instance` -> `.+`,
`$connector` -> a regex of the connector names Prometheus knows (from mailflow_connector_info),
`$__rate_interval` -> 1m, `$__range` -> 5m, `$__interval` -> 15s (override with --set NAME=VALUE).
An expression on the tenant metrics must evaluate without error but may return nothing (an agent
without a tenant, or a tenant that holds no mail, has no such series); --require-tenant-data makes
them count like the others, for a Prometheus that scrapes an agent with a tenant that holds mail.
"""

import argparse
import glob
import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CODES_JSON = os.path.join(HERE, "..", "docs", "codes.json")
REGENERATE = "`cargo run -q -- codes --output json > docs/codes.json`"

EXPECTED_UIDS = {
    "mailflow-overview.json": "mailflow-overview",
    "mailflow-connector.json": "mailflow-connector",
    "mailflow-certificates.json": "mailflow-certificates",
}
TAGS = {"mailflow", "exchange-online"}
DS = {"type": "prometheus", "uid": "${datasource}"}
NO_UNIT_PANELS = {"text", "row"}
BUILTIN_VARS = {"__rate_interval", "__range", "__interval", "__range_s", "__interval_ms", "__range_ms"}
LAB_VALUES = {"instance": ".+", "__rate_interval": "1m", "__range": "5m", "__interval": "15s"}
VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)")
# A series selector of the agent's metrics (or a recording rule of the mixin) and its matchers.
SERIES_RE = re.compile(r"\b((?:[a-z_]+:)?mailflow_[a-z0-9_]+(?::[a-z0-9_]+)?)\b(?!\s*\()(?:\{([^}]*)\})?")
# Series exported only when the agent has a `tenant:` section (Exchange Online's own view).
TENANT_RE = re.compile(r"\b(mailflow_exo_\w+|mailflow_connector_vantage_mismatch)\b")


def is_tenant_expr(expr):
    return bool(TENANT_RE.search(expr or ""))


# ---------------------------------------------------------------------------------------------
# docs/codes.json: the taxonomy of src/taxonomy.rs as data (`mailflow-exporter codes --output json`)
# ---------------------------------------------------------------------------------------------


def load_catalog(path=CODES_JSON):
    """docs/codes.json as (codes, reasons): codes is [(code, title, causes, fix)] in catalog order,
    reasons is {reason: description}. Raises ValueError when the file is missing or malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    codes, reasons = [], {}
    try:
        for entry in doc["codes"]:
            codes.append((entry["code"], entry["title"], list(entry["causes"]), entry["fix"]))
            for r in entry["reasons"]:
                reasons[r["reason"]] = r["description"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: unexpected shape ({e!r}); regenerate it with {REGENERATE}") from e
    if not codes:
        raise ValueError(f"{path}: no codes; regenerate it with {REGENERATE}")
    return codes, reasons


# The state timeline and stat panels show the current code as a number, one series per connector:
# ok -> 0, other -> 40000, any other code -> its digits (4.4.312 -> 44312, 4.7.320 -> 47320).
def code_number(code):
    if code == "ok":
        return 0
    if code == "other":
        return 40000
    return int(code.replace(".", ""))


# ---------------------------------------------------------------------------------------------
# walking a dashboard
# ---------------------------------------------------------------------------------------------


def all_panels(dash):
    for p in dash.get("panels", []):
        yield p
        for q in p.get("panels", []) or []:
            yield q


def targets(dash):
    """(panel title, target) for every target of every panel."""
    for p in all_panels(dash):
        for t in p.get("targets", []) or []:
            yield p.get("title", ""), t


def variables(dash):
    return {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}


def label_values_selector(query):
    """label_values(SELECTOR, label) -> (SELECTOR, label)."""
    q = query.get("query", "") if isinstance(query, dict) else query
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q or "", re.S)
    return (m.group(1), m.group(2)) if m else (None, None)


def _cells(g):
    return [(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])]


def walk(obj, path="$"):
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk(v, f"{path}[{i}]")


# ---------------------------------------------------------------------------------------------
# structure checks
# ---------------------------------------------------------------------------------------------


def check_dashboard(name, dash, uids, codes, reasons):
    errs = []
    err = errs.append
    uid = dash.get("uid")
    if name in EXPECTED_UIDS and uid != EXPECTED_UIDS[name]:
        err(f"uid is {uid!r}, expected {EXPECTED_UIDS[name]!r}")
    if dash.get("id") is not None:
        err("id must be null (importable as is)")
    if dash.get("schemaVersion") != 39:
        err(f"schemaVersion is {dash.get('schemaVersion')!r}, expected 39")
    if not dash.get("title"):
        err("no title")
    if not TAGS <= set(dash.get("tags", [])):
        err(f"tags {dash.get('tags')} lack {sorted(TAGS - set(dash.get('tags', [])))}")
    if "__inputs" in dash:
        err("__inputs present: the datasource variable makes the import need no input")

    # variables
    vs = variables(dash)
    ds = vs.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        err("no template variable `datasource` of type datasource with query prometheus")
    job = vs.get("job")
    jsel, jlabel = label_values_selector(job.get("query")) if job else (None, None)
    if not job or jlabel != "job" or not (jsel or "").startswith("mailflow_build_info"):
        err("variable `job` must be label_values(mailflow_build_info{...}, job)")
    elif job.get("includeAll") or job.get("multi"):
        err("variable `job` must be single-valued (two jobs scraping the same agents would add up)")
    inst = vs.get("instance")
    isel, ilabel = label_values_selector(inst.get("query")) if inst else (None, None)
    if not inst or ilabel != "instance" or not (isel or "").startswith("mailflow_build_info{") or 'job=~"$job"' not in isel:
        err('variable `instance` must be label_values(mailflow_build_info{..., job=~"$job"}, instance)')
    elif not inst.get("includeAll"):
        err("variable `instance` must include All")
    con = vs.get("connector")
    csel, clabel = label_values_selector(con.get("query")) if con else (None, None)
    if (not con or clabel != "connector" or not (csel or "").startswith("mailflow_connector_info{")
            or 'job=~"$job"' not in csel or 'instance=~"$instance"' not in csel):
        err('variable `connector` must be label_values(mailflow_connector_info{..., job=~"$job", instance=~"$instance"}, connector)')
    elif not (con.get("multi") and con.get("includeAll")):
        err("variable `connector` must be multi-value and include All")
    for vname in ("job", "instance", "connector"):
        v = vs.get(vname)
        if v and v.get("datasource") != DS:
            err(f"variable `{vname}` must use datasource {DS}")

    # no datasource other than ${datasource}
    for path, node in walk(dash):
        if not isinstance(node, dict) or "datasource" not in node:
            continue
        d = node["datasource"]
        if path.startswith("$.templating") and node.get("type") == "datasource":
            continue
        if isinstance(d, dict):
            if d != DS:
                err(f"{path}.datasource is {d}, expected {DS}")
        elif d is not None:
            err(f"{path}.datasource is {d!r}, expected {DS}")
    for path, node in walk(dash):
        if isinstance(node, dict) and "uid" in node and node is not dash:
            if node.get("uid") != "${datasource}":
                err(f"{path} has uid {node.get('uid')!r}: only ${{datasource}} is allowed")

    # links to the other dashboards
    link_urls = [link.get("url", "") for link in dash.get("links", [])]
    for other in EXPECTED_UIDS.values():
        if other != uid and not any(f"/d/{other}" in u for u in link_urls):
            err(f"no dashboard link to {other}")
    for path, node in walk(dash):
        if isinstance(node, str):
            for target in re.findall(r"/d/([\w-]+)", node):
                if target not in uids:
                    err(f"{path} links to unknown dashboard uid {target!r}")

    # panels
    ids = set()
    cells = {}
    for p in all_panels(dash):
        title = p.get("title") or f"panel id {p.get('id')}"
        where = f"panel {title!r}"
        pid = p.get("id")
        if pid in ids or pid is None:
            err(f"{where}: id {pid!r} missing or duplicated")
        ids.add(pid)
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
            err(f"{where}: bad gridPos {g}")
        else:
            hit = {cells[c] for c in _cells(g) if c in cells}
            if hit:
                err(f"{where} overlaps {sorted(hit)}")
            cells.update((c, title) for c in _cells(g))
        if p.get("type") == "row":
            continue
        if not p.get("title"):
            err(f"{where}: no title")
        if not (p.get("description") or "").strip():
            err(f"{where}: no description")
        if p.get("type") in NO_UNIT_PANELS:
            if p.get("targets"):
                err(f"{where}: a {p['type']} panel has targets")
            continue
        if p.get("datasource") != DS:
            err(f"{where}: datasource must be {DS}")
        unit = ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
        if not unit:
            err(f"{where}: no unit in fieldConfig.defaults")
        if p.get("type") == "heatmap" and not ((p.get("options") or {}).get("yAxis") or {}).get("unit"):
            err(f"{where}: heatmap without options.yAxis.unit")
        ts = p.get("targets") or []
        if not ts:
            err(f"{where}: no targets")
        if any(is_tenant_expr(t.get("expr")) for t in ts) and "tenant" not in (p.get("description") or "").lower():
            err(f"{where}: queries tenant metrics but its description does not say it needs a tenant")
        refs = [t.get("refId") for t in ts]
        if len(set(refs)) != len(refs) or None in refs:
            err(f"{where}: refIds missing or duplicated: {refs}")
        for t in ts:
            expr = (t.get("expr") or "").strip()
            if not expr:
                err(f"{where} target {t.get('refId')}: no expr")
                continue
            if t.get("datasource") != DS:
                err(f"{where} target {t.get('refId')}: datasource must be {DS}")
            for m in SERIES_RE.finditer(expr):
                if m.group(2) is None or 'job=~"$job"' not in m.group(2):
                    err(f"{where} target {t.get('refId')}: {m.group(1)} not filtered on job=~\"$job\"")
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                err(f"{where} target {t.get('refId')}: unbalanced brackets")
            for m in VAR_RE.finditer(expr):
                v = m.group(1) or m.group(2) or m.group(3)
                if v.isdigit():
                    continue  # label_replace's $1
                if v not in vs and v not in BUILTIN_VARS:
                    err(f"{where} target {t.get('refId')}: unknown variable ${v}")
                if v == "datasource":
                    err(f"{where} target {t.get('refId')}: $datasource in PromQL")

    # texts from docs/codes.json: every value mapping keyed by a code (or its number) names the code's
    # title, a mapping on a `fix` column gives the fix text, one on `reason` the reason's text, and
    # the text panel about fixes carries every code's title, causes and fix.
    if codes:
        by_key = {}
        for code, title, _, fix in codes:
            by_key[code] = by_key[str(code_number(code))] = (code, title, fix)
        for p in all_panels(dash):
            for field, mappings in _mapping_groups(p):
                for mp in mappings:
                    for key, opt in (mp.get("options") or {}).items() if mp.get("type") == "value" else []:
                        text = opt.get("text", "")
                        if field == "reason":
                            if reasons is not None and reasons.get(key) not in text:
                                err(f"panel {p.get('title')!r}: text for reason {key!r} differs from docs/codes.json")
                            continue
                        if key not in by_key:
                            continue
                        code, title, fix = by_key[key]
                        if field == "fix":
                            if text != fix:
                                err(f"panel {p.get('title')!r}: fix text for {code} differs from docs/codes.json")
                        elif title not in text:
                            err(f"panel {p.get('title')!r}: mapping {key} -> {text!r} lacks the title {title!r}")
        fix_panels = [p for p in all_panels(dash) if p.get("type") == "text" and "fix" in p.get("title", "").lower()]
        for p in fix_panels:
            content = (p.get("options") or {}).get("content", "")
            for code, title, causes, fix in codes:
                for piece in [code, title, fix, *causes]:
                    if piece not in content:
                        err(f"text panel {p.get('title')!r} lacks {piece!r} ({code}) from docs/codes.json")
    return errs


def _mapping_groups(panel):
    """(field name or None for the defaults, value mappings) of a panel."""
    fc = panel.get("fieldConfig") or {}
    yield None, (fc.get("defaults") or {}).get("mappings") or []
    for o in fc.get("overrides") or []:
        for prop in o.get("properties") or []:
            if prop.get("id") == "mappings":
                yield (o.get("matcher") or {}).get("options"), prop.get("value") or []


def load_dashboards(folder=HERE):
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path, encoding="utf-8") as f:
            try:
                out.append((os.path.basename(path), json.load(f), None))
            except json.JSONDecodeError as e:
                out.append((os.path.basename(path), None, f"does not parse: {e}"))
    return out


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------


def prom_query(base, expr, timeout=15):
    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        try:
            body = json.load(e)
        except Exception:  # noqa: BLE001 - report whatever came back
            return None, f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return None, f"request failed: {e}"
    if body.get("status") != "success":
        return None, f"{body.get('errorType')}: {body.get('error')}"
    return body["data"], None


def promql_regex_escape(s):
    """Like Grafana's regex escaping for multi-value variables, inside a PromQL string."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", s)


def substitute(expr, values):
    def repl(m):
        v = m.group(1) or m.group(2) or m.group(3)
        return values.get(v, m.group(0))

    return VAR_RE.sub(repl, expr)


def result_size(data):
    if data["resultType"] in ("vector", "matrix"):
        return len(data["result"])
    return 1  # scalar / string


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list-exprs", action="store_true", help="print every PromQL expression as JSON lines")
    ap.add_argument("--prometheus", metavar="URL", help="evaluate every expression against this Prometheus")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a substitution")
    ap.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="retry empty results until this many seconds have passed")
    ap.add_argument("--require-tenant-data", action="store_true",
                    help="expressions on the tenant metrics must return data too (a lab whose agent has a tenant that holds mail)")
    ap.add_argument("--dir", default=HERE, help="folder with the dashboards (default: this one)")
    args = ap.parse_args()
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `--list-exprs | head` ends quietly

    dashboards = load_dashboards(args.dir)
    failed = False
    try:
        codes, reasons = load_catalog()
    except ValueError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        codes, reasons = None, None
        failed = True
    if not dashboards:
        print("FAIL: no dashboard JSON found", file=sys.stderr)
        return 1
    uids = {}
    for name, dash, perr in dashboards:
        if dash is not None:
            uids.setdefault(dash.get("uid"), []).append(name)
    for uid, names in uids.items():
        if len(names) > 1:
            print(f"FAIL: uid {uid!r} used by {names}", file=sys.stderr)
            failed = True
    for name in EXPECTED_UIDS:
        if name not in [n for n, _, _ in dashboards]:
            print(f"FAIL: {name} missing", file=sys.stderr)
            failed = True
    for name, dash, perr in dashboards:
        errs = [perr] if perr else check_dashboard(name, dash, set(uids), codes, reasons)
        for e in errs:
            print(f"FAIL: {name}: {e}", file=sys.stderr)
        failed |= bool(errs)

    exprs = []
    for name, dash, _ in dashboards:
        if dash is None:
            continue
        for vname, v in variables(dash).items():
            sel, _label = label_values_selector(v.get("query"))
            if sel:
                exprs.append({"dashboard": dash.get("uid"), "panel": f"variable ${vname}", "refId": None, "expr": sel})
        for title, t in targets(dash):
            exprs.append({"dashboard": dash.get("uid"), "panel": title, "refId": t.get("refId"), "expr": t.get("expr", ""),
                          "tenant": is_tenant_expr(t.get("expr", ""))})

    if args.list_exprs:
        for e in exprs:
            print(json.dumps(e, ensure_ascii=False))

    if args.prometheus:
        values = dict(LAB_VALUES)
        data, perr = prom_query(args.prometheus, "group by (connector) (mailflow_connector_info)")
        names = sorted(s["metric"].get("connector", "") for s in (data or {}).get("result", []))
        if perr or not names:
            print(f"FAIL: no connectors in {args.prometheus} ({perr or 'mailflow_connector_info is empty'})")
            return 1
        values["connector"] = "(" + "|".join(promql_regex_escape(n) for n in names) + ")"
        # $job is single-valued: Grafana starts on the first job the variable lists.
        jobs = set()
        for name, dash, _ in dashboards:
            jv = variables(dash or {}).get("job")
            jsel = label_values_selector(jv.get("query"))[0] if jv else None
            if jsel:
                jdata, _e = prom_query(args.prometheus, f"group by (job) ({jsel})")
                jobs |= {x["metric"].get("job", "") for x in (jdata or {}).get("result", [])}
        if jobs:
            values["job"] = promql_regex_escape(sorted(jobs)[0])
        for kv in args.set:
            k, _, v = kv.partition("=")
            values[k.lstrip("$")] = v
        print(f"substitutions: {json.dumps(values, ensure_ascii=False)}")
        bad = 0
        deadline = time.monotonic() + args.wait
        for e in exprs:
            q = substitute(e["expr"], values)
            data, qerr = prom_query(args.prometheus, q)
            may_be_empty = e.get("tenant") and not args.require_tenant_data
            # rate()/increase() need two samples in the window: a young Prometheus may not have
            # them yet, so an empty result is retried until --wait runs out (errors are final).
            started = time.monotonic()
            while not qerr and not may_be_empty and result_size(data) == 0 and time.monotonic() < deadline:
                time.sleep(2)
                data, qerr = prom_query(args.prometheus, q)
            waited = time.monotonic() - started
            label = f"{e['dashboard']} / {e['panel']}" + (f" / {e['refId']}" if e["refId"] else "")
            if qerr:
                print(f"FAIL  {label}: {qerr}\n      {q}")
                bad += 1
            elif result_size(data) == 0 and may_be_empty:
                print(f"ok    {label}: empty (tenant metrics; none in this Prometheus)")
            elif result_size(data) == 0:
                print(f"FAIL  {label}: empty result\n      {q}")
                bad += 1
            else:
                note = f" (after waiting {waited:.0f}s for samples)" if waited >= 1 else ""
                print(f"ok    {label}: {result_size(data)} series{note}")
        print(f"{len(exprs) - bad} passed, {bad} failed")
        failed |= bad > 0
    elif not args.list_exprs:
        n = sum(1 for _, d, _ in dashboards if d is not None)
        print(f"{n} dashboards, {len(exprs)} expressions: " + ("FAILED" if failed else "structure ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
