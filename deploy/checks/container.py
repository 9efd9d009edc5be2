#!/usr/bin/env python3
"""Static checks of deploy/container/Dockerfile and .dockerignore (no container engine needed).

    container.py REPO                      check the rules, print each result, exit 1 on a failure
    container.py REPO --build-command      print the Dockerfile's `cargo build ...` command
    container.py REPO --healthcheck-argv   print the HEALTHCHECK's argv, one argument a line
    container.py REPO --dependency-step TARGET_DIR
                                           run the dependency layer (the COPYs and the RUN of the
                                           first `cargo build`) in a scratch directory, with
                                           CARGO_TARGET_DIR=TARGET_DIR; exit with its status

Only the standard library: it runs before deploy/check.sh sets up its venv.
"""

import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib

DOCKERFILE = "deploy/container/Dockerfile"
BINARY = "/usr/local/bin/mailflow-exporter"
USER = "10325:10325"
OCI_LABELS = ["title", "description", "version", "revision", "created", "licenses", "source"]
# Paths that must never reach the build context, whether or not they exist on this machine.
NEVER_IN_CONTEXT = [
    "target/release/mailflow-exporter",
    "target/debug/deps/x.d",
    "fuzz/target/x86_64-unknown-linux-gnu/release/config",
    "fuzz/corpus/config/seed",
    "bench/target/release/bench",
    ".git",
    ".git/HEAD",
    ".git/objects/pack/pack-1.pack",
    "tests/lab/run.sh",
    "bench/results/2026-12-03-0918.json",
    "bench/run.sh",
    "artifacts/status-page.png",
    "tests/lab/artifacts/agent.log",
    "data/queue-clock.json",
    "src/target/x",
    "agent.log",
]
MUST_BE_IN_CONTEXT = ["Cargo.toml", "Cargo.lock", "build.rs", "src/main.rs", "src/lib.rs"]


# --- Dockerfile --------------------------------------------------------------------------------


class Instr:
    def __init__(self, line, op, rest, stage):
        self.line, self.op, self.rest, self.stage = line, op, rest, stage

    def __repr__(self):
        return f"{DOCKERFILE}:{self.line}: {self.op}"


def parse_dockerfile(text):
    """Instructions with continuation lines joined and comment lines dropped (as Docker does)."""
    instrs, buf, start, stage = [], "", 0, -1
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        op, _, rest = buf.strip().partition(" ")
        op = op.upper()
        if op == "FROM":
            stage += 1
        instrs.append(Instr(start, op, rest.strip(), stage))
        buf = ""
    return instrs


def exec_form(rest):
    try:
        v = json.loads(rest)
    except ValueError:
        return None
    return v if isinstance(v, list) and all(isinstance(x, str) for x in v) else None


def split_flags(rest):
    """`--mount=... --from=x a b` -> ({'mount': [...], 'from': [...]}, 'a b')."""
    flags = {}
    while rest.startswith("--"):
        tok, _, rest = rest.partition(" ")
        k, _, v = tok[2:].partition("=")
        flags.setdefault(k, []).append(v)
        rest = rest.lstrip()
    return flags, rest


def labels_of(rest):
    out = {}
    for tok in shlex.split(rest):
        k, _, v = tok.partition("=")
        out[k] = v
    return out


def flag_value(argv, name):
    for i, a in enumerate(argv):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
    return None


def port_of(listen):
    return listen.rsplit(":", 1)[1] if listen and ":" in listen else None


# --- .dockerignore (the matching rules of Docker's build context) ------------------------------


def compile_ignore(text):
    """[(negated, regex)] in file order. Patterns are cleaned like filepath.Clean, `**` matches
    any number of directories, `*` and `?` stay within one, the last matching line wins, and a
    pattern that matches a directory matches everything below it."""
    out = []
    for raw in text.split("\n"):
        pat = raw.strip()
        if not pat or pat.startswith("#"):
            continue
        neg = pat.startswith("!")
        if neg:
            pat = pat[1:].strip()
        pat = posixpath.normpath(pat).lstrip("/")
        rx, i = "", 0
        while i < len(pat):
            c = pat[i]
            if pat.startswith("**", i):
                i += 2
                if pat.startswith("/", i):
                    rx += "(?:.*/)?"
                    i += 1
                else:
                    rx += ".*"
                continue
            if c == "*":
                rx += "[^/]*"
            elif c == "?":
                rx += "[^/]"
            elif c == "[":
                j = pat.find("]", i + 1)
                if j < 0:
                    rx += re.escape(c)
                else:
                    cls = pat[i + 1 : j]
                    if cls.startswith("!"):
                        cls = "^" + cls[1:]
                    rx += "[" + cls + "]"
                    i = j
            elif c == "\\" and i + 1 < len(pat):
                i += 1
                rx += re.escape(pat[i])
            else:
                rx += re.escape(c)
            i += 1
        out.append((neg, re.compile(rx + r"\Z"), raw.strip()))
    return out


def ignored(patterns, path):
    parts = path.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    matched = False
    for neg, rx, _ in patterns:
        if any(rx.match(p) for p in prefixes):
            matched = not neg
    return matched


def context_files(repo, patterns):
    """Files of the working tree that the build context would hold."""
    files, size = [], 0
    reinclude = [raw[1:].strip().lstrip("/") for _, _, raw in patterns if raw.startswith("!")]
    for root, dirs, names in os.walk(repo):
        rel = os.path.relpath(root, repo)
        rel = "" if rel == "." else rel.replace(os.sep, "/")
        keep = []
        for d in dirs:
            p = f"{rel}/{d}" if rel else d
            # Skip a directory that is excluded and that no `!` line could reach into.
            if ignored(patterns, p) and not any(r.startswith(p + "/") or r.startswith("*") for r in reinclude):
                continue
            keep.append(d)
        dirs[:] = keep
        for n in names:
            p = f"{rel}/{n}" if rel else n
            if not ignored(patterns, p):
                files.append(p)
                try:
                    size += os.lstat(os.path.join(root, n)).st_size
                except OSError:
                    pass
    return sorted(files), size


# --- the checks --------------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.failures = []

    def ok(self, cond, what, why=""):
        if cond:
            print(f"ok    {what}")
        else:
            print(f"FAIL  {what}{': ' + why if why else ''}")
            self.failures.append(what)
        return cond


def load(repo):
    with open(os.path.join(repo, DOCKERFILE), encoding="utf-8") as f:
        instrs = parse_dockerfile(f.read())
    with open(os.path.join(repo, "Cargo.toml"), "rb") as f:
        cargo = tomllib.load(f)["package"]
    return instrs, cargo


def build_commands(instrs):
    cmds = []
    for i in instrs:
        if i.op == "RUN":
            _, body = split_flags(i.rest)
            for m in re.finditer(r"cargo build[^&;|\n]*", body):
                cmds.append((i, m.group(0).strip()))
    return cmds


def healthcheck_argv(instrs):
    final = max(i.stage for i in instrs)
    hc = [i for i in instrs if i.op == "HEALTHCHECK" and i.stage == final]
    if not hc:
        return None, None
    flags, rest = split_flags(hc[-1].rest)
    if not rest.upper().startswith("CMD "):
        return hc[-1], None
    return hc[-1], exec_form(rest[4:].strip())


def check(repo):
    r = Report()
    instrs, cargo = load(repo)
    final = max(i.stage for i in instrs)
    froms = [i for i in instrs if i.op == "FROM"]
    in_final = [i for i in instrs if i.stage == final]
    glob_args = {}
    for i in instrs:
        if i.op == "ARG" and i.stage == -1:
            k, _, v = i.rest.partition("=")
            glob_args[k] = v

    print(f"--- {DOCKERFILE}")
    r.ok(len(froms) >= 2, "multi-stage: a build stage and a runtime stage", f"{len(froms)} FROM")
    base = froms[-1].rest.split()[0] if froms else ""
    r.ok(re.search(r"slim|distroless", base) is not None, f"slim runtime image ({base})")
    r.ok(
        glob_args.get("RUST_VERSION") == cargo.get("rust-version"),
        f"builder Rust {glob_args.get('RUST_VERSION')} = Cargo.toml rust-version {cargo.get('rust-version')}",
    )

    # USER: numeric uid:gid, and the last word of the runtime stage.
    users = [i for i in in_final if i.op == "USER"]
    user = users[-1].rest if users else None
    r.ok(user is not None and re.fullmatch(r"\d+(:\d+)?", user) is not None, f"numeric USER ({user})")
    r.ok(user == USER, f"USER is {USER}", f"found {user}")

    # Entrypoint, command, health check.
    ep = [exec_form(i.rest) for i in in_final if i.op == "ENTRYPOINT"]
    ep = ep[-1] if ep else None
    cmd = [exec_form(i.rest) for i in in_final if i.op == "CMD"]
    cmd = cmd[-1] if cmd else None
    r.ok(ep == [BINARY], f"ENTRYPOINT [\"{BINARY}\"] (exec form)", f"found {ep}")
    r.ok(bool(cmd) and cmd[0] == "serve", "CMD runs serve (exec form)", f"found {cmd}")
    hc_instr, hc = healthcheck_argv(instrs)
    r.ok(hc_instr is not None, "HEALTHCHECK in the runtime stage")
    r.ok(hc is not None, "HEALTHCHECK CMD in exec form (the image has no shell tools to rely on)", f"{hc_instr}")
    if hc:
        r.ok(hc[:2] == [BINARY, "healthcheck"], "HEALTHCHECK runs the agent's own `healthcheck` subcommand", f"{hc}")
        hc_port = port_of(flag_value(hc, "--web.listen-address") or ":10325")
        cmd_port = port_of(flag_value(cmd or [], "--web.listen-address") or ":10325")
        exposed = [p.split("/")[0] for i in in_final if i.op == "EXPOSE" for p in i.rest.split()]
        r.ok(hc_port == cmd_port, f"HEALTHCHECK asks the port serve listens on ({hc_port} = {cmd_port})")
        r.ok(cmd_port in exposed, f"EXPOSE {cmd_port}", f"EXPOSE {exposed}")
    copies_to_bin = [i for i in in_final if i.op == "COPY" and i.rest.split()[-1] == BINARY]
    r.ok(bool(copies_to_bin), f"the binary is copied to {BINARY}")
    storage = flag_value(cmd or [], "--storage.path")
    volumes = [v for i in in_final if i.op == "VOLUME" for v in (exec_form(i.rest) or i.rest.split())]
    r.ok(storage in volumes, f"the state directory {storage} is a VOLUME", f"VOLUME {volumes}")
    chowned = [i for i in in_final if i.op == "COPY" and i.rest.split()[-1] == storage]
    r.ok(
        any(f"--chown={USER}" in i.rest for i in chowned),
        f"{storage} is owned by {USER} (a new named volume copies that ownership)",
    )

    # Build: --locked --release, the same command twice (dependencies, then the source).
    cmds = build_commands(instrs)
    texts = sorted({c for _, c in cmds})
    r.ok(len(cmds) >= 2, "two cargo builds: the dependencies, then the source", f"{len(cmds)} found")
    r.ok(len(texts) == 1, "both builds run the same command", f"{texts}")
    for i, c in cmds:
        r.ok("--locked" in c.split() and "--release" in c.split(), f"line {i.line}: {c} (--locked --release)")
    builds = [i for i, _ in cmds]
    copies = [i for i in instrs if i.op == "COPY" and "from" not in split_flags(i.rest)[0]]
    first_build = builds[0].line if builds else 0
    manifest_copy = [
        i for i in copies if i.line < first_build and {"Cargo.toml", "Cargo.lock"} <= set(split_flags(i.rest)[1].split()[:-1])
    ]
    src_copy = [i for i in copies if any(s.rstrip("/") in ("src", ".") for s in split_flags(i.rest)[1].split()[:-1])]
    r.ok(bool(manifest_copy), "Cargo.toml and Cargo.lock are copied before the first build (dependency layer)")
    r.ok(
        bool(src_copy) and all(i.line > first_build for i in src_copy),
        "src/ is copied only after the dependency build (a source change reuses the dependency layer)",
    )
    r.ok(
        not any(s in (".", "./") for i in copies for s in split_flags(i.rest)[1].split()[:-1]),
        "no `COPY . .` (the whole context)",
    )
    labels = {}
    for i in in_final:
        if i.op == "LABEL":
            labels.update(labels_of(i.rest))
    stage_args = {}
    for i in in_final:
        if i.op == "ARG":
            k, _, v = i.rest.partition("=")
            stage_args[k] = v
    missing = [k for k in OCI_LABELS if f"org.opencontainers.image.{k}" not in labels]
    r.ok(not missing, "OCI labels: " + ", ".join(OCI_LABELS), f"missing {missing}")
    ver = labels.get("org.opencontainers.image.version", "")
    ver = stage_args.get(ver[2:-1], ver) if ver.startswith("${") else ver
    r.ok(ver == cargo["version"], f"version label {ver} = Cargo.toml version {cargo['version']}")
    lic = labels.get("org.opencontainers.image.licenses")
    r.ok(lic == cargo.get("license"), f"licenses label {lic} = Cargo.toml license {cargo.get('license')}")

    # The build context.
    print("--- .dockerignore")
    path = os.path.join(repo, ".dockerignore")
    r.ok(os.path.isfile(path), ".dockerignore at the repository root (the build context's root)")
    if not os.path.isfile(path):
        return r
    with open(path, encoding="utf-8") as f:
        patterns = compile_ignore(f.read())
    for p in NEVER_IN_CONTEXT:
        r.ok(ignored(patterns, p), f"excluded: {p}")
    for p in MUST_BE_IN_CONTEXT:
        r.ok(not ignored(patterns, p), f"included: {p}")
    files, size = context_files(repo, patterns)
    fileset = set(files)
    bad = [f for f in files if f.split("/")[0] in ("target", ".git", "fuzz", "bench", "tests") or "/target/" in f]
    r.ok(not bad, "nothing of target/, .git, fuzz/, bench/ or tests/ in this tree's context", f"{bad[:5]}")
    for i in copies:
        for s in split_flags(i.rest)[1].split()[:-1]:
            s = s.rstrip("/") or "."
            found = bool(files) if s in (".", "./") else s in fileset or any(f.startswith(s + "/") for f in files)
            r.ok(found, f"line {i.line}: COPY source {s} is in the context")
    print(f"      context of this tree: {len(files)} files, {size / 1024:.0f} KiB")
    return r


def dependency_step(repo, instrs, target_dir, timeout=3600):
    """Runs the build stage up to its first `cargo build` as Docker would, minus the image: the
    stage's COPYs (context paths, relative to WORKDIR) into an empty scratch directory, then that
    RUN's shell body there. This is what proves the dummy-source trick still builds with the
    current manifest (a new target in Cargo.toml, a build script reading a file that is not
    copied yet) — a static look at the Dockerfile cannot. The target dir is shared with the
    real build so the dependencies are compiled once; the body's own `cargo clean -p` removes
    the empty crate's artefacts from it again."""
    cmds = build_commands(instrs)
    if not cmds:
        sys.exit(f"no RUN with cargo build in {DOCKERFILE}")
    run = cmds[0][0]
    stage = [i for i in instrs if i.stage == run.stage and i.line < run.line]
    _, body = split_flags(run.rest)
    with tempfile.TemporaryDirectory(prefix="mailflow-deps-") as tmp:
        workdir = tmp
        for i in stage:
            if i.op == "WORKDIR":
                workdir = os.path.join(tmp, i.rest.strip().lstrip("/"))
                os.makedirs(workdir, exist_ok=True)
            elif i.op == "COPY":
                flags, rest = split_flags(i.rest)
                if "from" in flags:
                    continue
                *srcs, dest = rest.split()
                dest_abs = os.path.join(workdir, dest)
                into_dir = dest.endswith("/") or len(srcs) > 1
                for s in srcs:
                    src = os.path.join(repo, s)
                    if os.path.isdir(src):  # Docker copies a directory's contents, not itself
                        shutil.copytree(src, dest_abs, dirs_exist_ok=True)
                    else:
                        to = os.path.join(dest_abs, os.path.basename(s)) if into_dir else dest_abs
                        os.makedirs(os.path.dirname(to), exist_ok=True)
                        shutil.copy2(src, to)
            elif i.op == "RUN":
                sys.exit(f"{i}: a RUN before the dependency build is not simulated here; extend {__file__}")
        print(f"+ (in a scratch {os.path.relpath(workdir, tmp) or '.'} with {sorted(os.listdir(workdir))}) {body}", flush=True)
        env = dict(os.environ, CARGO_TARGET_DIR=target_dir)
        try:
            rc = subprocess.run(["sh", "-ec", body], cwd=workdir, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            sys.exit(f"the dependency step took longer than {timeout}s")
        left = sorted(os.listdir(workdir))
        if rc == 0 and "src" in left:
            sys.exit(f"the dependency step left its dummy src/ behind: {left}")
        return rc


def main():
    repo = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "--check"
    instrs, _ = load(repo)
    if mode == "--build-command":
        cmds = sorted({c for _, c in build_commands(instrs)})
        if len(cmds) != 1:
            sys.exit(f"expected one cargo build command in {DOCKERFILE}, found {cmds}")
        print(cmds[0])
    elif mode == "--healthcheck-argv":
        _, argv = healthcheck_argv(instrs)
        if not argv:
            sys.exit(f"no HEALTHCHECK CMD in exec form in {DOCKERFILE}")
        print("\n".join(argv))
    elif mode == "--dependency-step":
        sys.exit(dependency_step(repo, instrs, os.path.abspath(sys.argv[3])))
    elif mode == "--check":
        r = check(repo)
        if r.failures:
            print(f"{len(r.failures)} container check(s) failed", file=sys.stderr)
            sys.exit(1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
