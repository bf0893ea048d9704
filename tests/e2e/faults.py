#!/usr/bin/env python3
"""vishnu end-to-end fault test: the demo while its session store dies and comes back.

usage: tests/e2e/faults.py [--help] [--stores redis,memcached,postgres] [--keep-logs]

For each store it starts its own throwaway servers with scripts/services/*.sh in a
temporary directory (never servers it did not start: it kills and restarts them), starts
the Rust demo on them (free 127.0.0.1 ports), logs in and counts, then:

  outage     kills the store (Redis: the standalone server; memcached: both nodes;
             PostgreSQL: immediate shutdown). Every session request while it is down
             must answer 5xx within 2.5 s (the store timeout is 2 s), /public must still
             answer 200, and the demo process must stay alive.
  log        the demo's stderr, from just before the outage to just after it, must hold
             exactly one ERROR line per 5xx answer, and every one of those lines must name
             the store error ("session store unavailable" or "session store timed out").
  recovery   after restarting the server, without restarting the demo, requests succeed
             again within 15 s: PostgreSQL kept the data, so the same browser session is
             still logged in with its counter intact; Redis and memcached run without
             persistence, so the old cookie gets a fresh session (401 on /whoami, counter
             restarting at 1) and a new login works.
  freeze     (Redis, memcached) the server is paused with SIGSTOP: it accepts connections but
             never answers. Requests must still answer 5xx within 2.5 s, and the demo recovers
             after SIGCONT.
  one node   (memcached) with 60 logged-in sessions spread over the two nodes, one node is
             killed: at least a quarter of the sessions must still answer /whoami 200 with
             their user and count on; every other one must answer 5xx or 401 within 2.5 s
             (never hang); at least a fifth of 40 fresh sessions still start on the live
             node, the others answer 5xx within 2.5 s. After the node is
             back, the sessions that lived on it start fresh and new sessions work.

Environment: VISHNU_DEMO_BIN (default target/debug/examples/demo; build it with
'cargo build --example demo --all-features'). Python 3 standard library only.
Prints one line per check and a final 'e2e-faults: N passed, M failed'; exits 1 on failure.
"""
import atexit
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, free_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEADLINE = 2.5  # seconds: the store timeout (2 s) plus slack
# One memcached node down: sessions land on either node with probability 1/2 (rendezvous
# hashing of random ids), so "at least a quarter of 60" fails by chance with p = 2e-5,
# and "at least a fifth of 40 fresh sessions" with p = 2e-5 too.
SESSIONS = 60
FRESH = 40
STORE_ERROR = re.compile(r"session store (unavailable|timed out)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

check = Checks()


class Client:
    """A cookie-keeping HTTP client that times each request."""

    def __init__(self, port):
        self.port = port
        self.cookies = {}

    def request(self, method, path, form=None, timeout=10):
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            res = conn.getresponse()
            text = res.read().decode("utf-8", "replace").strip()
            for c in res.headers.get_all("Set-Cookie") or []:
                pair, _, attrs = c.partition(";")
                name, _, value = pair.partition("=")
                if not value or "max-age=0" in attrs.lower():
                    self.cookies.pop(name.strip(), None)
                else:
                    self.cookies[name.strip()] = value.strip()
            status = res.status
        except (OSError, http.client.HTTPException) as e:
            status, text = 0, f"{type(e).__name__}: {e}"
        finally:
            conn.close()
        return status, text, time.monotonic() - start

    def login(self, user):
        return self.request("POST", "/login", {"user": user})


class Run:
    """What this run started: service directories and demo processes, stopped at exit."""

    def __init__(self, keep_logs):
        self.dir = tempfile.mkdtemp(prefix="vishnu-e2e-faults-")
        os.chmod(self.dir, 0o755)  # the postgres user must reach its data directory
        self.keep_logs = keep_logs
        self.services = []  # (name, dir)
        self.demos = []

    def service(self, name):
        """Starts scripts/services/NAME.sh in a directory of its own; returns its env vars."""
        sdir = os.path.join(self.dir, f"services-{name}")
        os.makedirs(sdir)
        os.chmod(sdir, 0o755)
        script = os.path.join(ROOT, "scripts", "services", f"{name}.sh")
        self.services.append((name, sdir))
        proc = subprocess.run(["bash", script, "start", sdir], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/services/{name}.sh start failed:\n{proc.stdout}{proc.stderr}")
        env = {}
        with open(os.path.join(sdir, f"{name}.env")) as f:
            for line in f:
                m = re.match(r"export (\w+)=(.*)", line.strip())
                if m:
                    env[m.group(1)] = m.group(2)
        return sdir, env

    def ctl(self, name, sdir, *args):
        """Runs scripts/services/NAME.sh ARGS[0] SDIR ARGS[1:]; True when it succeeded."""
        script = os.path.join(ROOT, "scripts", "services", f"{name}.sh")
        proc = subprocess.run(["bash", script, args[0], sdir, *args[1:]], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"      {name}.sh {' '.join(args)}: {proc.stdout}{proc.stderr}".rstrip(), flush=True)
        return proc.returncode == 0

    def demo(self, label, store_url):
        port = free_port()
        err_path = os.path.join(self.dir, f"demo-{label}.stderr")
        out_path = os.path.join(self.dir, f"demo-{label}.stdout")
        with open(err_path, "wb") as err, open(out_path, "wb") as out:
            proc = subprocess.Popen(
                [DEMO_BIN, "--port", str(port), "--store", store_url],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "NO_COLOR": "1", "RUST_LOG": "info"},
            )
        self.demos.append(proc)
        demo = Demo(proc, port, err_path)
        for _ in range(200):
            if proc.poll() is not None:
                break
            status, _, _ = Client(port).request("GET", "/public", timeout=1)
            if status == 200:
                return demo
            time.sleep(0.1)
        raise RuntimeError(f"the demo on {label} did not start; stderr:\n{demo.log_tail()}")

    def cleanup(self):
        if self.dir is None:
            return
        for proc in self.demos:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.demos = []
        for name, sdir in reversed(self.services):
            # resume a paused server first (stop also sends SIGCONT, but only to servers it stops)
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "services", f"{name}.sh"), "stop", sdir],
                           capture_output=True)
        self.services = []
        if self.keep_logs:
            print(f"logs kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


class Demo:
    def __init__(self, proc, port, err_path):
        self.proc, self.port, self.err_path = proc, port, err_path

    def alive(self):
        return self.proc.poll() is None

    def log_offset(self):
        return os.path.getsize(self.err_path)

    def log_since(self, offset):
        time.sleep(0.3)  # let the last lines reach the file
        with open(self.err_path, "rb") as f:
            f.seek(offset)
            return [ANSI.sub("", line) for line in f.read().decode("utf-8", "replace").splitlines()]

    def log_tail(self, n=15):
        with open(self.err_path, "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def error_lines(lines):
    return [l for l in lines if re.search(r"\bERROR\b", l)]


def check_log(label, demo, offset, failed_requests):
    """One ERROR line per 5xx answer, each naming the store error."""
    errors = error_lines(demo.log_since(offset))
    named = [l for l in errors if STORE_ERROR.search(l)]
    check(f"{label}: the demo logged one ERROR line per 5xx answer ({len(errors)} lines, {failed_requests} answers)",
          len(errors) == failed_requests, "\n        " + "\n        ".join(errors[:12]))
    check(f"{label}: every ERROR line names the store error", errors and len(named) == len(errors),
          "\n        " + "\n        ".join(l for l in errors if not STORE_ERROR.search(l))[:2000])
    if errors:
        print("      e.g. " + errors[0][:220], flush=True)


def outage_requests(label, demo, client):
    """Session requests while the store is down: each must be 5xx within DEADLINE. Returns the 5xx count."""
    fresh = Client(demo.port)
    newcomer = Client(demo.port)
    plan = [
        (client, "GET", "/whoami", None),
        (client, "GET", "/counter", None),
        (client, "GET", "/", None),
        (fresh, "GET", "/counter", None),
        (newcomer, "POST", "/login", {"user": "mallory"}),
        (client, "GET", "/whoami", None),
    ]
    results = [(m, p, *c.request(m, p, f)) for c, m, p, f in plan]
    bad = [(m, p, s, round(t, 2)) for m, p, s, _, t in results if not (500 <= s < 600 and t < DEADLINE)]
    slowest = max(t for *_, t in results)
    check(f"{label}: all {len(results)} session requests answer 5xx within {DEADLINE} s (slowest {slowest:.2f} s)",
          not bad, bad)
    status, text, t = Client(demo.port).request("GET", "/public")
    check(f"{label}: /public (no session) still answers 200", status == 200 and text == "public", (status, text))
    check(f"{label}: the demo process is still alive", demo.alive())
    return sum(1 for _, _, s, _, _ in results if 500 <= s < 600)


def wait_recovered(demo, path="/counter", limit=15.0):
    # a fresh session's /counter needs a store write, so a 200 means the store answers again
    """Polls with fresh sessions until the demo answers 200 again; returns the seconds it took or None."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        status, _, _ = Client(demo.port).request("GET", path, timeout=5)
        if status == 200:
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def store_scenario(run, store):
    label = store
    name = {"redis": "redis", "memcached": "memcached", "postgres": "postgres"}[store]
    sdir, env = run.service(name)
    url = {"redis": "VISHNU_REDIS_URL", "memcached": "VISHNU_MEMCACHED_URL", "postgres": "VISHNU_POSTGRES_URL"}[store]
    url = env[url]
    if store == "redis":
        kill = lambda: run.ctl(name, sdir, "kill", "standalone")
        restart = lambda: run.ctl(name, sdir, "restart", "standalone")
        pause = lambda: run.ctl(name, sdir, "pause", "standalone")
        resume = lambda: run.ctl(name, sdir, "resume", "standalone")
    elif store == "memcached":
        kill = lambda: run.ctl(name, sdir, "kill", "node-1") and run.ctl(name, sdir, "kill", "node-2")
        restart = lambda: run.ctl(name, sdir, "restart", "node-1") and run.ctl(name, sdir, "restart", "node-2")
        pause = lambda: run.ctl(name, sdir, "pause", "node-1") and run.ctl(name, sdir, "pause", "node-2")
        resume = lambda: run.ctl(name, sdir, "resume", "node-1") and run.ctl(name, sdir, "resume", "node-2")
    else:
        kill = lambda: run.ctl(name, sdir, "kill")
        restart = lambda: run.ctl(name, sdir, "restart")
        pause = resume = None
    keeps_data = store == "postgres"

    demo = run.demo(label, url)
    pid = demo.proc.pid
    b = Client(demo.port)
    status, _, _ = b.login("ada")
    counts = [b.request("GET", "/counter")[1] for _ in range(3)]
    status2, who, _ = b.request("GET", "/whoami")
    check(f"{label}: logged in and counted before the outage (1, 2, 3)",
          status == 303 and counts == ["1", "2", "3"] and status2 == 200 and who == "ada", (status, counts, status2, who))

    # -- outage: the server is killed
    offset = demo.log_offset()
    check(f"{label}: killed the store server", kill())
    failed = outage_requests(f"{label} down", demo, b)
    check_log(f"{label} down", demo, offset, failed)

    # -- recovery
    check(f"{label}: restarted the store server", restart())
    took = wait_recovered(demo)
    check(f"{label}: requests succeed again after the restart, without restarting the demo"
          + (f" ({took:.1f} s)" if took is not None else ""), took is not None and demo.alive() and demo.proc.pid == pid,
          demo.log_tail(5))
    status, who, t = b.request("GET", "/whoami")
    if keeps_data:
        check(f"{label}: the same browser session is still logged in (whoami 200 ada)", status == 200 and who == "ada", (status, who))
        status, n, _ = b.request("GET", "/counter")
        check(f"{label}: its counter went on from 3 (the failed increments were not applied): 4",
              status == 200 and n == "4", (status, n))
    else:
        check(f"{label}: the old cookie is unknown to the emptied store: whoami 401 within {DEADLINE} s",
              status == 401 and t < DEADLINE, (status, who, round(t, 2)))
        status, n, _ = b.request("GET", "/counter")
        check(f"{label}: the same browser gets a fresh session (counter 1)", status == 200 and n == "1", (status, n))
    status, _, _ = b.login("ada2")
    status2, who, _ = b.request("GET", "/whoami")
    check(f"{label}: login works again after the restart", status == 303 and status2 == 200 and who == "ada2",
          (status, status2, who))

    # -- freeze: the server accepts but never answers
    if pause is not None:
        offset = demo.log_offset()
        check(f"{label}: froze the store server (SIGSTOP)", pause())
        failed = outage_requests(f"{label} frozen", demo, b)
        check_log(f"{label} frozen", demo, offset, failed)
        check(f"{label}: resumed the store server (SIGCONT)", resume())
        took = wait_recovered(demo)
        check(f"{label}: requests succeed again after the freeze" + (f" ({took:.1f} s)" if took is not None else ""),
              took is not None)
        status, who, _ = b.request("GET", "/whoami")
        check(f"{label}: the session survived the freeze (whoami 200 ada2)", status == 200 and who == "ada2", (status, who))

    check(f"{label}: the demo ran throughout as one process (pid {pid})", demo.alive() and demo.proc.pid == pid)
    demo.stop()

    if store == "memcached":
        one_node_down(run, sdir, url)


def one_node_down(run, sdir, url):
    label = "memcached one node down"
    demo = run.demo("memcached-one-node", url)
    sessions = []
    for i in range(SESSIONS):
        c = Client(demo.port)
        s1, _, _ = c.login(f"u{i}")
        s2, n, _ = c.request("GET", "/counter")
        sessions.append((f"u{i}", c, s1 == 303 and s2 == 200 and n == "1"))
    check(f"{label}: {SESSIONS} sessions logged in and counted while both nodes run", all(ok for *_, ok in sessions),
          sum(1 for *_, ok in sessions if not ok))

    offset = demo.log_offset()
    check(f"{label}: killed node-2", run.ctl("memcached", sdir, "kill", "node-2"))
    alive, dead, slow, other = [], [], [], []
    failed = 0
    for user, c, _ in sessions:
        status, who, t = c.request("GET", "/whoami")
        if t >= DEADLINE:
            slow.append((user, status, round(t, 2)))
        if status == 200 and who == user:
            alive.append((user, c))
        elif 500 <= status < 600 or status == 401:
            dead.append((user, c))
            failed += 500 <= status < 600
        else:
            other.append((user, status, who))
    check(f"{label}: every session answers within {DEADLINE} s", not slow, slow)
    check(f"{label}: a good share of the sessions still answer 200 with their user "
          f"({len(alive)}/{SESSIONS}, at least {SESSIONS // 4})", len(alive) >= SESSIONS // 4, len(alive))
    check(f"{label}: the others answer 5xx or 401 ({len(dead)}), nothing else", not other, other)
    counts = [c.request("GET", "/counter") for _, c in alive]
    check(f"{label}: the live node's sessions count on (counter 2)", all(s == 200 and n == "2" for s, n, _ in counts),
          [(s, n) for s, n, _ in counts if not (s == 200 and n == "2")])
    fresh = [Client(demo.port).request("GET", "/counter") for _ in range(FRESH)]
    started = sum(1 for s, n, _ in fresh if s == 200 and n == "1")
    fresh_failed = sum(1 for s, _, _ in fresh if 500 <= s < 600)
    check(f"{label}: fresh sessions start on the live node ({started}/{FRESH}, at least {FRESH // 5}), "
          f"the rest 5xx within {DEADLINE} s",
          started >= FRESH // 5 and started + fresh_failed == FRESH and all(t < DEADLINE for *_, t in fresh),
          [(s, n, round(t, 2)) for s, n, t in fresh if not (s == 200 and n == "1")][:5])
    check(f"{label}: the demo process is still alive", demo.alive())
    check_log(label, demo, offset, failed + fresh_failed)

    check(f"{label}: restarted node-2", run.ctl("memcached", sdir, "restart", "node-2"))
    took = wait_recovered(demo)
    check(f"{label}: requests succeed on both nodes again" + (f" ({took:.1f} s)" if took is not None else ""),
          took is not None)
    still = [c.request("GET", "/whoami") for _, c in alive]
    check(f"{label}: the live node's sessions are still logged in", all(s == 200 for s, _, _ in still),
          [s for s, _, _ in still])
    gone = [c.request("GET", "/whoami") for _, c in dead]
    check(f"{label}: the restarted node's sessions start fresh (401) within {DEADLINE} s",
          all(s == 401 and t < DEADLINE for s, _, t in gone), [(s, round(t, 2)) for s, _, t in gone if s != 401][:5])
    fresh = [Client(demo.port).request("GET", "/counter") for _ in range(FRESH)]
    check(f"{label}: every new session works again ({FRESH}/{FRESH})", all(s == 200 and n == "1" for s, n, _ in fresh),
          [(s, n) for s, n, _ in fresh if not (s == 200 and n == "1")][:5])
    demo.stop()


def main():
    global DEMO_BIN
    args = sys.argv[1:]
    if "-h" in args or "--help" in args:
        print(__doc__)
        return 0
    stores = ["redis", "memcached", "postgres"]
    keep_logs = False
    it = iter(args)
    for a in it:
        if a == "--stores":
            stores = [s for s in next(it, "").split(",") if s]
        elif a.startswith("--stores="):
            stores = [s for s in a.split("=", 1)[1].split(",") if s]
        elif a == "--keep-logs":
            keep_logs = True
        else:
            print(f"faults.py: unknown argument {a!r} (try --help)", file=sys.stderr)
            return 2
    unknown = [s for s in stores if s not in ("redis", "memcached", "postgres")]
    if unknown or not stores:
        print(f"faults.py: --stores takes a comma-separated list of redis, memcached, postgres (got {stores})",
              file=sys.stderr)
        return 2
    DEMO_BIN = os.path.abspath(os.path.join(ROOT, os.environ.get("VISHNU_DEMO_BIN", "target/debug/examples/demo")))
    if not os.access(DEMO_BIN, os.X_OK):
        print(f"faults.py: the demo binary {DEMO_BIN} is missing: build it with "
              "'cargo build --example demo --all-features' (or set VISHNU_DEMO_BIN)", file=sys.stderr)
        print("e2e-faults: 0 passed, 1 failed")
        return 1

    run = Run(keep_logs)
    atexit.register(run.cleanup)

    def on_signal(signum, _frame):
        print(f"faults.py: signal {signum}: stopping what was started", file=sys.stderr)
        sys.exit(130)  # atexit stops the demos and the servers

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    for store in stores:
        print(f"-- {store}", flush=True)
        try:
            store_scenario(run, store)
        except Exception as e:  # a scenario that cannot go on is one failure, the others still run
            check(f"{store}: the scenario ran to the end", False, f"{type(e).__name__}: {e}")
    run.cleanup()
    return check.summary("e2e-faults")


DEMO_BIN = None

if __name__ == "__main__":
    sys.exit(main())
