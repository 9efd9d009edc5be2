#!/usr/bin/env python3
"""Writes the files of the mixin from `jsonnet build.jsonnet` (JSON on stdin) into a directory.

Input: {"<path>": {"format": "yaml" | "yaml-stream" | "json", "doc": ...}}; {"__json__": x} in a
doc is x as JSON text. In YAML documents a
key "#" of an object is written as comment lines above it (jsonnet's hidden '#' fields, exposed
by build.jsonnet). Python 3 standard library only; with PyYAML installed (--verify) every YAML
file is parsed back and compared with the data, so the writer cannot change a value unnoticed.
"""
import json, os, re, sys

WIDTH = 100
ORDER = [
    "name", "interval", "record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations", "rules",
    "summary", "description", "runbook_url", "dashboard_url",
    "apiVersion", "kind", "metadata", "namespace", "spec", "data",
    "source_labels", "regex", "target_label", "replacement", "action",
]
SPECIAL = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", ""}
PLAIN = re.compile(r"^(?:[A-Za-z][A-Za-z0-9 _./:%?&=+#-]*|[0-9]+(?:ms|s|m|h|d|w|y))$")


def keys(o):
    rank = {k: i for i, k in enumerate(ORDER)}
    return sorted((k for k in o if k != "#"), key=lambda k: (rank.get(k, len(ORDER)), k))


def control(s):
    return any(ord(c) < 32 and c not in "\n" or ord(c) == 127 for c in s)


def plain(s):
    return (bool(PLAIN.match(s)) and s.lower() not in SPECIAL and not s.endswith((" ", ":"))
            and ": " not in s and " #" not in s and "  " not in s)


def quote(s):
    return json.dumps(s, ensure_ascii=False) if control(s) or "\n" in s else "'" + s.replace("'", "''") + "'"


def wrap(s, room):
    lines, cur = [], ""
    for w in s.split(" "):
        if cur and len(cur) + 1 + len(w) > room:
            lines.append(cur)
            cur = w
        else:
            cur = w if not cur else cur + " " + w
    return lines + [cur]


def string(s, indent):
    """[rest of the key's line, further lines] for the string s."""
    pad = " " * indent
    if "\n" in s and not control(s) and "\t" not in s:
        body = s.rstrip("\n")
        trailing = len(s) - len(body)
        lines = body.split("\n") + [""] * max(0, trailing - 1)
        if not any(l.strip() == "" and l != "" for l in lines) and not any(l.endswith(" ") for l in lines):
            chomp = "-" if trailing == 0 else ("" if trailing == 1 else "+")
            ind = "2" if lines[0].startswith(" ") else ""
            return [" |" + ind + chomp] + [pad + l if l else "" for l in lines]
    if plain(s) and (len(s) + indent <= WIDTH or " " not in s):
        return [" " + s]
    foldable = (" " in s and "\n" not in s and not control(s) and "\t" not in s and "  " not in s
                and not s.startswith(" ") and not s.endswith(" "))
    if foldable and len(s) + indent > WIDTH:
        return [" >-"] + [pad + l for l in wrap(s, max(40, WIDTH - indent))]
    return [" " + quote(s)]


def scalar(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def comment(v, indent):
    if isinstance(v, dict) and "#" in v:
        return [" " * indent + ("# " + l if l else "#") for l in v["#"].rstrip("\n").split("\n")]
    return []


def value(v, indent):
    if isinstance(v, str):
        return string(v, indent)
    if isinstance(v, dict):
        return [" {}"] if not keys(v) else [""] + obj(v, indent)
    if isinstance(v, list):
        return [" []"] if not v else [""] + arr(v, indent)
    return [" " + scalar(v)]


def key(k):
    return k if plain(k) and " " not in k else quote(k)


def obj(o, indent):
    out = []
    for k in keys(o):
        lines = value(o[k], indent + 2)
        out += comment(o[k], indent) + [" " * indent + key(k) + ":" + lines[0]] + lines[1:]
    return out


def arr(a, indent):
    out = []
    for item in a:
        if isinstance(item, dict) and keys(item):
            lines = obj(item, indent + 2)
            out += comment(item, indent) + [" " * indent + "- " + lines[0].lstrip(" ")] + lines[1:]
        else:
            lines = value(item, indent + 2)
            out += comment(item, indent) + [" " * indent + "-" + lines[0]] + lines[1:]
    return out


def document(doc):
    body = obj(doc, 0) if isinstance(doc, dict) else arr(doc, 0)
    return "\n".join(comment(doc, 0) + body) + "\n"


def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k != "#"}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v


def to_json(doc):
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def resolve(v):
    """{"__json__": x} stands for x written as JSON text (a dashboard in a ConfigMap)."""
    if isinstance(v, dict):
        if list(v) == ["__json__"]:
            return to_json(v["__json__"])
        return {k: resolve(x) for k, x in v.items()}
    if isinstance(v, list):
        return [resolve(x) for x in v]
    return v


def main():
    out, verify = sys.argv[1], "--verify" in sys.argv
    files = json.load(sys.stdin)
    for path, f in sorted(files.items()):
        fmt, doc = f["format"], resolve(f["doc"])
        if fmt == "json":
            text = to_json(doc)
        elif fmt == "yaml":
            text = document(doc)
        elif fmt == "yaml-stream":
            text = "---\n".join(document(d) for d in doc)
        else:
            sys.exit(f"{path}: unknown format {fmt}")
        if verify and fmt != "json":
            import yaml  # PyYAML
            back = list(yaml.safe_load_all(text)) if fmt == "yaml-stream" else yaml.safe_load(text)
            if back != strip(doc):
                sys.exit(f"{path}: the YAML written does not read back as the mixin's data")
        full = os.path.join(out, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as fh:
            fh.write(text)


main()
