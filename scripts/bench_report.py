#!/usr/bin/env python3
"""Merges benchmark row files into one JSON list, or prints a table with vishnu's advantage
over each peer (peer / vishnu for times, vishnu / peer for throughput: above 1x, vishnu wins).

usage: bench_report.py ROWS.json...         merged JSON on stdout
       bench_report.py --table RESULTS.json  a Markdown table on stdout
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


def table(rows):
    by = {(r["suite"], r["scenario"], r["library"], r["metric"]): r["value"] for r in rows}
    print("| suite | scenario | library | metric | value | vishnu advantage |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        key = (r["suite"], r["scenario"], "vishnu", r["metric"])
        ratio = ""
        if r["library"] not in ("vishnu", "floor", "actix-floor") and key in by and r["value"]:
            a = advantage(by[key], r["value"], r["metric"])
            ratio = "" if a is None else "%.2fx" % a
        print("| %s | %s | %s | %s | %.3f %s | %s |" % (
            r["suite"], r["scenario"], r["library"], r["metric"], r["value"], r["unit"], ratio))


def main():
    if sys.argv[1:2] == ["--table"]:
        table(load(sys.argv[2:]))
    else:
        print(json.dumps(load(sys.argv[1:]), indent=1))


if __name__ == "__main__":
    main()
