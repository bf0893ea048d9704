#!/usr/bin/env python3
"""Merges benchmark row files into one JSON list, or prints a table with vishnu's advantage
over each peer (peer / vishnu for times, vishnu / peer for throughput: above 1x, vishnu wins),
or checks the targets of issue #10.

Like is compared with like: actix-session's rows against actix-vishnu's (vishnu's actix-web
middleware, same actix test service and timing loop) where the suite has them, every other
peer against the `vishnu` row of its suite and scenario.

usage: bench_report.py ROWS.json...           merged JSON on stdout
       bench_report.py --table RESULTS.json    a Markdown table on stdout
       bench_report.py --targets RESULTS.json  the targets as a Markdown table (exit 1 if one is missed)
"""
import json
import sys


def load(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            rows.extend(json.load(f))
    return rows


HIGHER_IS_BETTER = {"requests_per_s"}


def advantage(vishnu, peer, metric):
    """How many times better vishnu is than the peer (> 1: vishnu wins)."""
    if metric in HIGHER_IS_BETTER:
        return vishnu / peer if peer else None
    return peer / vishnu if vishnu else None


OURS = ("vishnu", "actix-vishnu", "floor", "floor-cas", "actix-floor")


def counterpart(by, r):
    """The vishnu row a peer's row is compared with."""
    if r["library"] == "actix-session":
        key = (r["suite"], r["scenario"], "actix-vishnu", r["metric"])
        if key in by:
            return key
    return (r["suite"], r["scenario"], "vishnu", r["metric"])


def table(rows):
    by = {(r["suite"], r["scenario"], r["library"], r["metric"]): r["value"] for r in rows}
    print("| suite | scenario | library | metric | value | vishnu advantage |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        key = counterpart(by, r)
        ratio = ""
        if r["library"] not in OURS and key in by and r["value"]:
            a = advantage(by[key], r["value"], r["metric"])
            ratio = "" if a is None else "%.2fx" % a
        print("| %s | %s | %s | %s | %.3f %s | %s |" % (
            r["suite"], r["scenario"], r["library"], r["metric"], r["value"], r["unit"], ratio))


def targets(rows):
    """Issue #10's targets, each as (target, measured, met); None when the rows are missing."""
    by = {(r["suite"], r["scenario"], r["library"], r["metric"]): r["value"] for r in rows}
    out = []

    def get(*key):
        return by.get(key)

    for scenario in ("read", "write"):
        v = get("rust-redis", scenario, "vishnu", "requests_per_s")
        peers = {p: get("rust-redis", scenario, p, "requests_per_s") for p in ("tower-sessions", "actix-session")}
        peers = {p: x for p, x in peers.items() if x}
        if v and peers:
            best = max(peers, key=peers.get)
            ratio = v / peers[best]
            out.append(("Redis %s: requests/s >= 1.1x the best peer" % scenario,
                        "%.2fx %s (%.0f vs %.0f)" % (ratio, best, v, peers[best]), ratio >= 1.1))
        vp = get("rust-redis", scenario, "vishnu", "p99_us")
        pp = [x for x in (get("rust-redis", scenario, p, "p99_us") for p in ("tower-sessions", "actix-session")) if x]
        if vp and pp:
            out.append(("Redis %s: p99 no worse than the best peer's" % scenario,
                        "%.0f us vs %.0f us" % (vp, min(pp)), vp <= min(pp)))
        # The same comparison framework by framework (information): vishnu's
        # axum layer against tower-sessions, its actix-web middleware against
        # actix-session, each on its own Redis store.
        for ours, peer, framework in (("vishnu", "tower-sessions", "axum"), ("actix-vishnu", "actix-session", "actix-web")):
            o, q = get("rust-redis", scenario, ours, "requests_per_s"), get("rust-redis", scenario, peer, "requests_per_s")
            if o and q:
                out.append(("Redis %s on %s: %s / %s (information)" % (scenario, framework, ours, peer),
                            "%.2fx (%.0f vs %.0f)" % (o / q, o, q), None))
        f = get("rust-redis", scenario, "floor", "requests_per_s")
        if v and f:
            out.append(("Redis %s: >= 0.85x the floor's requests/s" % scenario,
                        "%.2fx (%.0f vs %.0f)" % (v / f, v, f), v / f >= 0.85))
        # The floor with vishnu's compare-and-set in place of its SET
        # (information): what compare-and-set itself costs, and how close
        # vishnu comes to a client that does it and nothing else.
        c = get("rust-redis", scenario, "floor-cas", "requests_per_s")
        if f and c:
            out.append(("Redis %s: floor-cas / floor (information)" % scenario,
                        "%.2fx (%.0f vs %.0f)" % (c / f, c, f), None))
        if v and c:
            out.append(("Redis %s: vishnu / floor-cas (information)" % scenario,
                        "%.2fx (%.0f vs %.0f)" % (v / c, v, c), None))
    for scenario, limit in (("untouched", 0.34), ("read", 0.5), ("write", 0.5)):
        v = get("rust-inprocess", scenario, "vishnu", "overhead_us")
        t = get("rust-inprocess", scenario, "tower-sessions", "overhead_us")
        if v is not None and t:
            out.append(("in-process %s: overhead <= %.2fx tower-sessions'" % (scenario, limit),
                        "%.2fx (%.3f us vs %.3f us)" % (v / t, v, t), v / t <= limit))
    for scenario in ("untouched", "read", "write"):
        v = get("rust-inprocess", scenario, "actix-vishnu", "overhead_us")
        t = get("rust-inprocess", scenario, "actix-session", "overhead_us")
        if v is not None and t:
            out.append(("in-process %s on actix-web: overhead / actix-session's (information)" % scenario,
                        "%.2fx (%.3f us vs %.3f us)" % (v / t, v, t), None))
    v = get("python-wsgi", "redis-write", "vishnu", "requests_per_s")
    o = get("python-wsgi", "redis-write", "vishnu-3.1.1", "requests_per_s")
    if v and o:
        out.append(("Python redis-write: >= 5x the original vishnu", "%.1fx (%.0f vs %.0f)" % (v / o, v, o), v / o >= 5))
    for scenario in ("read", "write"):
        c = get("rust-redis-cluster", scenario, "vishnu", "requests_per_s")
        s = get("rust-redis", scenario, "vishnu", "requests_per_s")
        if c and s:
            out.append(("Redis Cluster %s: vishnu's requests/s on the cluster / standalone (information)" % scenario,
                        "%.2fx (%.0f vs %.0f)" % (c / s, c, s), None))
    return out


def main():
    if sys.argv[1:2] == ["--table"]:
        table(load(sys.argv[2:]))
    elif sys.argv[1:2] == ["--targets"]:
        checked = targets(load(sys.argv[2:]))
        print("| target (issue #10) | measured | met? |")
        print("|---|---|---|")
        for name, measured, met in checked:
            print("| %s | %s | %s |" % (name, measured, {True: "yes", False: "**no**", None: ""}[met]))
        sys.exit(0 if all(m is not False for _, _, m in checked) else 1)
    else:
        print(json.dumps(load(sys.argv[1:]), indent=1))


if __name__ == "__main__":
    main()
