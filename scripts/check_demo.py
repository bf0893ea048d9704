#!/usr/bin/env python3
"""Drives a running vishnu demo (Rust or Python) through its routes and checks each answer.

usage: check_demo.py http://127.0.0.1:PORT [--client-side-store] [--renewal SECONDS] [--metrics] [--parallel N] [--framework]

--client-side-store: the demo runs on the cookie store, which cannot revoke a
copied cookie (documented); the replay and grace checks are reported as
skipped, and the /sessions routes must answer 501.
--renewal SECONDS: the demo runs with --renew-every 1 --grace SECONDS; checks
the renewal and its grace window too.
--metrics: the demo serves GET /metrics (the Rust demo); checks that known
traffic moves its counters by exactly as much.
--parallel N: N increments of one session's counter, sent 8 at a time (to a
server with several workers, each may serve some): the count is exact.
--framework: a Flask, Django or FastAPI app with the demo's core routes
(scripts/frameworks/apps): a framework's session API has no list of a user's
sessions, so the /sessions checks are left out.

Exits 0 when every check passes; prints one line per check.
"""
import http.client
import json
import os
import sys
import time
import urllib.parse

failures = 0
passes = 0


def check(name, ok, detail=""):
    global failures, passes
    passes += 1 if ok else 0
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else f"  ({detail})"))
    if not ok:
        failures += 1


def removal(set_cookie):
    """Whether a Set-Cookie removes its cookie: Max-Age=0, or an expiry in 1970
    (Starlette's way)."""
    attrs = set_cookie.lower().partition(";")[2]
    return "max-age=0" in attrs or "01 jan 1970" in attrs or "01-jan-1970" in attrs


class Browser:
    def __init__(self, base, agent=None):
        url = urllib.parse.urlsplit(base)
        self.host, self.port = url.hostname, url.port
        self.cookies = {}
        self.agent = agent

    def request(self, method, path, form=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        headers = {}
        if self.agent:
            headers["User-Agent"] = self.agent
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        res = conn.getresponse()
        text = res.read().decode("utf-8", "replace")
        set_cookies = res.headers.get_all("Set-Cookie") or []
        for c in set_cookies:
            pair, _, attrs = c.partition(";")
            name, _, value = pair.partition("=")
            if not value or removal(c):
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value.strip()
        conn.close()
        return res.status, text, set_cookies, res.headers


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    base = sys.argv[1]
    client_side = "--client-side-store" in sys.argv[2:]
    b = Browser(base)

    status, text, sc, _ = b.request("GET", "/public")
    check("GET /public answers 200 'public' without a cookie", status == 200 and text == "public" and not sc, (status, text, sc))

    status, text, sc, _ = b.request("GET", "/whoami")
    check("GET /whoami before login is 401", status == 401, status)

    status, text, sc, _ = b.request("GET", "/counter")
    check("GET /counter starts at 1 and sets a cookie", status == 200 and text.strip() == "1" and sc, (status, text, sc))
    # Attribute names are case-insensitive (RFC 6265 5.2): Starlette writes "httponly".
    check("the cookie is HttpOnly and SameSite", bool(sc) and "httponly" in sc[0].lower() and "samesite=" in sc[0].lower(), sc)
    first_cookie = dict(b.cookies)
    for expected in ("2", "3"):
        status, text, _, _ = b.request("GET", "/counter")
        check(f"GET /counter counts to {expected}", status == 200 and text.strip() == expected, (status, text))

    status, text, _, _ = b.request("GET", "/")
    check("GET / shows the counter and a login form", status == 200 and ">3<" in text and 'action="/login"' in text and 'name="user"' in text, text[:200])

    status, text, sc, headers = b.request("POST", "/login", {"user": "ada"})
    check("POST /login redirects 303 to /", status == 303 and headers.get("Location") == "/", (status, headers.get("Location")))
    check("login cycles the session id", b.cookies and b.cookies != first_cookie, (first_cookie, b.cookies))

    status, text, _, _ = b.request("GET", "/whoami")
    check("GET /whoami names the user", status == 200 and text.strip() == "ada", (status, text))
    status, text, _, _ = b.request("GET", "/counter")
    check("the counter survives login", status == 200 and text.strip() == "4", (status, text))
    status, text, _, _ = b.request("GET", "/")
    check("GET / shows the logged-in user", "ada" in text, text[:300])

    stale = Browser(base)
    stale.cookies = dict(first_cookie)
    status, text, _, _ = stale.request("GET", "/whoami")
    if client_side:
        print("skip  the pre-login cookie is dead after login (client-side store)")
    else:
        check("the pre-login cookie is dead after login", status == 401, (status, text))
        status, text, sc, _ = stale.request("GET", "/whoami")
        check("a pre-login cookie in the grace window gets no Set-Cookie on a read", status == 401 and not sc, (status, sc))
        status, text, sc, _ = stale.request("GET", "/counter")
        check("a write with the pre-login cookie in the grace window is 409 without Set-Cookie", status == 409 and not sc, (status, text, sc))
        status, text, _, _ = b.request("GET", "/counter")
        check("the logged-in session is untouched by the stale writes", status == 200 and text.strip() == "5", (status, text))

    logged_in = dict(b.cookies)
    status, text, sc, headers = b.request("POST", "/logout")
    check("POST /logout redirects 303 to /", status == 303 and headers.get("Location") == "/", status)
    check("logout removes the cookie", not b.cookies and any(removal(c) for c in sc), sc)
    status, text, _, _ = b.request("GET", "/whoami")
    check("GET /whoami after logout is 401", status == 401, status)

    replay = Browser(base)
    replay.cookies = dict(logged_in)
    status, text, _, _ = replay.request("GET", "/whoami")
    if client_side:
        print("skip  a replayed cookie after logout is 401 (client-side store: cannot revoke copies)")
    else:
        check("a replayed cookie after logout is 401", status == 401, status)

    tampered = Browser(base)
    name, value = next(iter(logged_in.items()))
    flipped = ("B" if value[5] == "A" else "A")
    tampered.cookies = {name: value[:5] + flipped + value[6:]}
    status, text, _, _ = tampered.request("GET", "/counter")
    check("a tampered cookie gets a fresh session, not an error", status == 200 and text.strip() == "1", (status, text))

    garbage = Browser(base)
    garbage.cookies = {name: "%%%not-base64%%%", "other": '{"json":"x"}'}
    status, text, _, _ = garbage.request("GET", "/counter")
    check("a garbage cookie gets a fresh session, not an error", status == 200 and text.strip() == "1", (status, text))

    if "--metrics" in sys.argv[2:]:
        metrics(base, client_side)
    if "--framework" not in sys.argv[2:]:
        users_sessions(base, client_side)
    if "--renewal" in sys.argv[2:]:
        renewal(base, int(sys.argv[sys.argv.index("--renewal") + 1]))
    if "--parallel" in sys.argv[2:]:
        parallel_increments(base, int(sys.argv[sys.argv.index("--parallel") + 1]))

    print(f"demo-checks: {passes} passed, {failures} failed")
    return 1 if failures else 0


def counters(base):
    """The demo's counters and histogram counts, by name and labels."""
    status, text, sc, _ = Browser(base).request("GET", "/metrics")
    check("GET /metrics answers 200 without a cookie", status == 200 and not sc, (status, sc))
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def metrics(base, client_side):
    """Known traffic moves the counters by exactly as much."""
    before = counters(base)
    fresh = [Browser(base) for _ in range(3)]
    for b in fresh:
        b.request("GET", "/counter")
    bad = Browser(base)
    bad.cookies = {"vishnu": "%%%garbage%%%"}
    bad.request("GET", "/whoami")
    status, _, _, _ = fresh[1].request("POST", "/login", {"user": "metrics-" + os.urandom(4).hex()})
    check("a visitor with a session logs in", status == 303, status)
    fresh[0].request("POST", "/logout")
    after = counters(base)
    delta = lambda name: after.get(name, 0) - before.get(name, 0)
    check("vishnu_sessions_created_total counts the 3 new sessions", delta("vishnu_sessions_created_total") == 3,
          delta("vishnu_sessions_created_total"))
    check("vishnu_cookies_rejected_total counts the garbage cookie as malformed",
          delta('vishnu_cookies_rejected_total{reason="malformed"}') == 1,
          delta('vishnu_cookies_rejected_total{reason="malformed"}'))
    check("vishnu_session_ids_changed_total counts the login's cycle",
          delta('vishnu_session_ids_changed_total{reason="cycle"}') == 1,
          delta('vishnu_session_ids_changed_total{reason="cycle"}'))
    check("vishnu_sessions_terminated_total counts the logout", delta("vishnu_sessions_terminated_total") == 1,
          delta("vishnu_sessions_terminated_total"))
    if not client_side:
        loads = sum(v for k, v in after.items() if k.startswith("vishnu_store_seconds_count{") and 'op="load"' in k)
        check("vishnu_store_seconds counts store loads", loads > 0, loads)


def login(base, user, agent):
    b = Browser(base, agent)
    status, _, _, _ = b.request("POST", "/login", {"user": user})
    check(f"{agent} logs in", status == 303 and bool(b.cookies), status)
    return b


def listed(b):
    status, text, _, headers = b.request("GET", "/sessions")
    try:
        return status, json.loads(text) if status == 200 else None
    except ValueError:
        return status, None


def users_sessions(base, client_side):
    """GET /sessions and the revoke routes."""
    user = "user-" + os.urandom(6).hex()
    anonymous = Browser(base)
    status, _, _, _ = anonymous.request("GET", "/sessions")
    check("GET /sessions when not logged in is 401", status == 401, status)
    laptop = login(base, user, "laptop-agent")
    if client_side:
        status, _ = listed(laptop)
        check("GET /sessions on the cookie store is 501 (unsupported)", status == 501, status)
        return
    phone = login(base, user, "phone-agent")
    status, sessions = listed(laptop)
    ok = status == 200 and isinstance(sessions, list) and len(sessions) == 2
    check("GET /sessions lists the user's two sessions", ok, (status, sessions))
    if not ok:
        return
    fields = {"handle", "current", "created_at", "last_access", "label"}
    check("each listed session has handle, current, created_at, last_access, label",
          all(fields <= set(s) and isinstance(s["created_at"], int) and isinstance(s["last_access"], int) for s in sessions), sessions)
    check("exactly the asking session is current, labelled with its User-Agent",
          [s["label"] for s in sessions if s["current"]] == ["laptop-agent"], sessions)
    phone_handle = next(s["handle"] for s in sessions if not s["current"])
    laptop_handle = next(s["handle"] for s in sessions if s["current"])
    for cookie in list(laptop.cookies.values()) + list(phone.cookies.values()):
        check("a handle is not a session cookie", phone_handle not in cookie and laptop_handle not in cookie, phone_handle)

    intruder = login(base, user + "-mallory", "intruder-agent")
    status, _, _, _ = intruder.request("POST", "/sessions/revoke", {"handle": laptop_handle})
    status2, text, _, _ = laptop.request("GET", "/whoami")
    check("another user's handle revokes nothing", status == 303 and status2 == 200 and text.strip() == user, (status, status2, text))

    status, _, _, headers = laptop.request("POST", "/sessions/revoke", {"handle": phone_handle})
    check("POST /sessions/revoke answers 303", status == 303 and headers.get("Location") == "/", status)
    status, _, _, _ = phone.request("GET", "/whoami")
    check("the revoked session is logged out", status == 401, status)
    status, sessions = listed(laptop)
    check("the revoked session is no longer listed", status == 200 and [s["handle"] for s in sessions] == [laptop_handle], sessions)

    tablet = login(base, user, "tablet-agent")
    status, _, _, _ = laptop.request("POST", "/sessions/revoke-others")
    check("POST /sessions/revoke-others answers 303", status == 303, status)
    status, _, _, _ = tablet.request("GET", "/whoami")
    check("revoke-others logs the other device out", status == 401, status)
    status, text, _, _ = laptop.request("GET", "/whoami")
    check("revoke-others keeps the current session", status == 200 and text.strip() == user, (status, text))

    desktop = login(base, user, "desktop-agent")
    replayed = Browser(base)
    replayed.cookies = dict(laptop.cookies)
    status, _, sc, _ = laptop.request("POST", "/sessions/revoke-all")
    check("POST /sessions/revoke-all answers 303 and removes the cookie",
          status == 303 and any(removal(c) for c in sc) and not laptop.cookies, (status, sc))
    for name, device in (("desktop", desktop), ("laptop (its cookie replayed)", replayed)):
        status, _, _, _ = device.request("GET", "/whoami")
        check(f"revoke-all logs the {name} out", status == 401, status)
    status, text, _, _ = intruder.request("GET", "/whoami")
    check("another user's session survives revoke-all", status == 200, (status, text))


def parallel_increments(base, n):
    """n concurrent increments of one session's counter lose none."""
    from concurrent.futures import ThreadPoolExecutor
    b = Browser(base)
    status, text, _, _ = b.request("GET", "/counter")
    check("a session for the parallel increments", status == 200 and text.strip() == "1" and bool(b.cookies), (status, text))

    def one(_):
        tab = Browser(base)
        tab.cookies = dict(b.cookies)
        return tab.request("GET", "/counter")[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(n)))
    check(f"{n} parallel increments all answer 200", statuses.count(200) == n,
          {s: statuses.count(s) for s in set(statuses)})
    status, text, _, _ = b.request("GET", "/counter")
    check(f"the counter is exact after {n} parallel increments", status == 200 and text.strip() == str(n + 2),
          (status, text, n + 2))


def renewal(base, grace):
    """The demo runs with --renew-every 1 --grace GRACE."""
    user = "renew-" + os.urandom(6).hex()
    b = login(base, user, "renewing-agent")
    _, before = listed(b)
    old = dict(b.cookies)
    time.sleep(1.2)
    status, text, sc, _ = b.request("GET", "/counter")
    check("a used session gets a new id after --renew-every", status == 200 and sc and b.cookies != old, (status, sc))
    new = dict(b.cookies)
    tabs = []
    for _ in range(3):
        tab = Browser(base)
        tab.cookies = dict(old)
        status, text, sc, _ = tab.request("GET", "/whoami")
        tabs.append(tab.cookies)
        check("inside the renewal grace the old id is served the session", status == 200 and text.strip() == user, (status, text))
    check("and every request with the old id is sent the same new id", all(t == new for t in tabs), (tabs, new))
    _, after = listed(b)
    check("the handle survives the renewal", before and after and before[0]["handle"] == after[0]["handle"], (before, after))
    time.sleep(grace + 0.3)
    stale = Browser(base)
    stale.cookies = dict(old)
    status, _, _, _ = stale.request("GET", "/whoami")
    check("after the renewal grace the old id is dead", status == 401, status)


if __name__ == "__main__":
    sys.exit(main())
