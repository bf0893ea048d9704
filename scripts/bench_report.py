#!/usr/bin/env python3
"""Merges benchmark row files into one JSON list, or prints a table with vishnu / peer ratios.

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


def table(rows):
    by = {(r["suite"], r["scenario"], r["library"], r["metric"]): r["value"] for r in rows}
    print("| suite | scenario | library | metric | value | vishnu / this |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        key = (r["suite"], r["scenario"], "vishnu", r["metric"])
        ratio = ""
        if r["library"] not in ("vishnu", "floor", "actix-floor") and key in by and r["value"]:
            ratio = "%.2f" % (by[key] / r["value"])
        print("| %s | %s | %s | %s | %.3f %s | %s |" % (
            r["suite"], r["scenario"], r["library"], r["metric"], r["value"], r["unit"], ratio))


def main():
    if sys.argv[1:2] == ["--table"]:
        table(load(sys.argv[2:]))
    else:
        print(json.dumps(load(sys.argv[1:]), indent=1))


if __name__ == "__main__":
    main()
