#!/usr/bin/env python3
"""vishnu end-to-end load test: the demo on each server store under 256 concurrent connections.

usage: tests/e2e/load.py [--help] [--stores redis,redis-cluster,memcached,postgres,mysql]
                         [--duration SECONDS] [--connections N] [--sessions K] [--keep-logs]

For each store it starts the Rust demo (free 127.0.0.1 port) and runs the load generator
(crates/vishnu/examples/load.rs) against it, loopback only, bounded in time:

  - K sessions (default 64) log in; N keep-alive connections (default 256) are spread over
    them; for --duration seconds (default 10, at most 60) each connection sends a mix of
    reads (GET /whoami, GET /: a quarter each) and writes (GET /counter: half);
  - checked: no non-2xx answer and no transport error; /whoami and / always name the
    session's own user; per session, the values /counter answered were exactly 1..n
    (no lost or doubled increment) and one more GET /counter answers exactly n+1;
  - the demo process is still alive afterwards.

Requests/s and latency p50/p99 are printed per store: information, never asserted.

Servers: a store whose URL is already in the environment (VISHNU_REDIS_URL,
VISHNU_REDIS_CLUSTER_URL, VISHNU_MEMCACHED_URL, VISHNU_POSTGRES_URL, VISHNU_MYSQL_URL, as
scripts/test.sh sets them) is used as it is; otherwise its server is started with
scripts/services/*.sh in a temporary directory and stopped at the end. mysql is skipped
when neither VISHNU_MYSQL_URL nor a MariaDB/MySQL server binary is there, except under CI
(CI=true or CI=1), where that is a failed check.

Environment: VISHNU_DEMO_BIN (default target/debug/examples/demo), VISHNU_LOAD_BIN (default
target/debug/examples/load, or $CARGO_TARGET_DIR/debug/examples/load; built with
'cargo build --example load' when missing). Python 3 standard library only.
Prints a final 'e2e-load: N passed, M failed'; exits 1 on failure.
"""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, free_port, under_ci  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STORES = {
    # name: (the env var with its URL, the scripts/services script that starts its server)
    "redis": ("VISHNU_REDIS_URL", "redis"),
    "redis-cluster": ("VISHNU_REDIS_CLUSTER_URL", "redis"),
    "memcached": ("VISHNU_MEMCACHED_URL", "memcached"),
    "postgres": ("VISHNU_POSTGRES_URL", "postgres"),
    "mysql": ("VISHNU_MYSQL_URL", "mariadb"),
}

check = Checks()


class Run:
    def __init__(self, keep_logs):
        self.dir = tempfile.mkdtemp(prefix="vishnu-e2e-load-")
        os.chmod(self.dir, 0o755)  # the postgres user must reach its data directory
        self.keep_logs = keep_logs
        self.started = {}  # services script -> its env vars
        self.procs = []

    def url(self, store):
        var, script = STORES[store]
        if os.environ.get(var):
            return os.environ[var]
        if script not in self.started:
            if script == "mariadb" and not any(
                shutil.which(p) or os.path.exists(f"/usr/sbin/{p}") for p in ("mariadbd", "mysqld")
            ):
                return None
            sdir = os.path.join(self.dir, "services")
            os.makedirs(sdir, exist_ok=True)
            os.chmod(sdir, 0o755)
            print(f"      starting scripts/services/{script}.sh in {sdir}", flush=True)
            self.started[script] = {}
            proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "services", f"{script}.sh"), "start", sdir],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"scripts/services/{script}.sh start failed:\n{proc.stdout}{proc.stderr}")
            with open(os.path.join(sdir, f"{script}.env")) as f:
                for line in f:
                    m = re.match(r"export (\w+)=(.*)", line.strip())
                    if m:
                        self.started[script][m.group(1)] = m.group(2)
        return self.started[script].get(var)

    def cleanup(self):
        if self.dir is None:
            return
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        sdir = os.path.join(self.dir, "services")
        for script in self.started:
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "services", f"{script}.sh"), "stop", sdir],
                           capture_output=True)
        if self.keep_logs:
            print(f"logs kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


def wait_http(url, proc, seconds=20):
    end = time.monotonic() + seconds
    while time.monotonic() < end and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def run_store(run, store, load_bin, opts):
    url = run.url(store)
    if url is None:
        why = f"{store}: no VISHNU_MYSQL_URL and no MariaDB/MySQL server binary (apt-get install mariadb-server)"
        if under_ci():
            check(f"{why}; under CI no store may be skipped", False)
        else:
            print(f"skip  {why}")
        return None
    port = free_port()
    log_path = os.path.join(run.dir, f"demo-{store}.log")
    with open(log_path, "wb") as log:
        demo = subprocess.Popen([DEMO_BIN, "--port", str(port), "--store", url], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    run.procs.append(demo)
    if not check(f"{store}: the demo started", wait_http(f"http://127.0.0.1:{port}/public", demo),
                 open(log_path, errors="replace").read()[-1500:]):
        return None
    cmd = [load_bin, "--url", f"http://127.0.0.1:{port}", "--connections", str(opts["connections"]),
           "--sessions", str(opts["sessions"]), "--duration", str(opts["duration"])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run.procs.append(proc)
    result = None
    lines = []
    try:
        out, _ = proc.communicate(timeout=opts["duration"] + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        lines.append("load: killed after duration + 60 s")
    for line in out.splitlines():
        if line.startswith("load-result "):
            try:
                result = json.loads(line[len("load-result "):])
            except ValueError:
                pass
        else:
            lines.append(line)
    for line in lines:
        print("      " + line, flush=True)
    if not check(f"{store}: the load generator ran to the end", result is not None, f"exit {proc.returncode}"):
        demo.terminate()
        return None
    r = result
    if r["non_2xx"] or r["errors"]:
        # what the demo said about them: its WARN/ERROR lines, counted, timestamps dropped
        counts = {}
        with open(log_path, errors="replace") as f:
            for line in f:
                line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
                m = re.search(r"\b(WARN|ERROR)\b.*", line)
                if m:
                    counts[m.group(0)[:300]] = counts.get(m.group(0)[:300], 0) + 1
        for line, n in sorted(counts.items(), key=lambda kv: -kv[1])[:8]:
            print(f"      demo log: {n} x {line}", flush=True)
    check(f"{store}: every answer was 2xx ({r['ok']} of {r['requests']}; non-2xx {r['non_2xx']}, "
          f"transport errors {r['errors']})", r["non_2xx"] == 0 and r["errors"] == 0 and r["requests"] > 0)
    check(f"{store}: /whoami and / always named the session's own user", r["wrong_user"] == 0, r["wrong_user"])
    check(f"{store}: per session, /counter answered exactly 1..n and then n+1 ({r['sessions_ok']}/{r['sessions']} "
          f"sessions, {r['increments']} increments)", r["sessions_ok"] == r["sessions"])
    check(f"{store}: the demo is still alive after the load", demo.poll() is None)
    demo.terminate()
    try:
        demo.wait(10)
    except subprocess.TimeoutExpired:
        demo.kill()
        demo.wait()
    return r


def load_binary():
    explicit = os.environ.get("VISHNU_LOAD_BIN")
    if explicit:
        path = os.path.abspath(os.path.join(ROOT, explicit))
        if not os.access(path, os.X_OK):
            raise SystemExit(f"load.py: VISHNU_LOAD_BIN={explicit} is not an executable file")
        return path
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    path = os.path.abspath(os.path.join(ROOT, target, "debug", "examples", "load"))
    if os.access(path, os.X_OK):
        return path
    if not shutil.which("cargo"):
        raise SystemExit(f"load.py: {path} is missing and cargo is not installed to build it "
                         "(cargo build --example load)")
    print("load.py: building the load generator (cargo build --example load)", flush=True)
    subprocess.run(["cargo", "build", "--quiet", "--example", "load", "-p", "vishnu"], cwd=ROOT, check=True)
    return path


def main():
    global DEMO_BIN
    args = sys.argv[1:]
    if "-h" in args or "--help" in args:
        print(__doc__)
        return 0
    opts = {"stores": list(STORES), "duration": 10, "connections": 256, "sessions": 64}
    keep_logs = False
    it = iter(args)
    for a in it:
        key, _, value = a.partition("=")
        if key in ("--stores", "--duration", "--connections", "--sessions"):
            value = value or next(it, "")
            if key == "--stores":
                opts["stores"] = [s for s in value.split(",") if s]
            else:
                if not value.isdigit() or int(value) <= 0:
                    print(f"load.py: {key} takes a positive number", file=sys.stderr)
                    return 2
                opts[key[2:]] = int(value)
        elif a == "--keep-logs":
            keep_logs = True
        else:
            print(f"load.py: unknown argument {a!r} (try --help)", file=sys.stderr)
            return 2
    bad = [s for s in opts["stores"] if s not in STORES]
    if bad or not opts["stores"]:
        print(f"load.py: --stores takes a comma-separated list of {', '.join(STORES)}", file=sys.stderr)
        return 2
    if opts["duration"] > 60:
        print("load.py: --duration is at most 60 seconds per store", file=sys.stderr)
        return 2
    DEMO_BIN = os.path.abspath(os.path.join(ROOT, os.environ.get("VISHNU_DEMO_BIN", "target/debug/examples/demo")))
    if not os.access(DEMO_BIN, os.X_OK):
        print(f"load.py: the demo binary {DEMO_BIN} is missing: build it with "
              "'cargo build --example demo --all-features' (or set VISHNU_DEMO_BIN)", file=sys.stderr)
        print("e2e-load: 0 passed, 1 failed")
        return 1
    try:
        load_bin = load_binary()
    except (SystemExit, subprocess.CalledProcessError) as e:
        print(e if isinstance(e, SystemExit) else f"load.py: building the load generator failed: {e}", file=sys.stderr)
        print("e2e-load: 0 passed, 1 failed")
        return 1

    run = Run(keep_logs)
    atexit.register(run.cleanup)

    def on_signal(signum, _frame):
        print(f"load.py: signal {signum}: stopping what was started", file=sys.stderr)
        sys.exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    summary = []
    for store in opts["stores"]:
        print(f"-- {store}", flush=True)
        try:
            r = run_store(run, store, load_bin, opts)
        except Exception as e:
            check(f"{store}: ran to the end", False, f"{type(e).__name__}: {e}")
            r = None
        if r is not None:
            summary.append((store, r))
    run.cleanup()
    if summary:
        print(f"\n{'store':<14} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  (debug build unless "
              "VISHNU_DEMO_BIN says otherwise; information only)")
        for store, r in summary:
            print(f"{store:<14} {r['requests']:>9} {r['rps']:>8.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}")
    return check.summary("e2e-load")


DEMO_BIN = None

if __name__ == "__main__":
    sys.exit(main())
