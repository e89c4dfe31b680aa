"""Runs every benchmark module and writes all rows to one JSON file: python -m benchmarks."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import pkgutil
import platform
import sys
import time
from pathlib import Path

import benchmarks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--output", default="bench-results.json", help="JSON file for all rows")
    parser.add_argument(
        "--only", action="append", default=[], help="run only bench_<NAME> (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    parser.add_argument(
        "--full", action="store_true", help="the largest sizes too (bench_fleet: 20 M rows)"
    )
    args = parser.parse_args(argv)
    names = sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    if args.only:
        names = [n for n in names if n.removeprefix("bench_") in args.only or n in args.only]
    rows = []
    header = f"{'benchmark':<12} {'figure':<44} {'value':>12} {'floor':>12} {'ratio':>7}  goal"
    print(header)
    print("-" * len(header))
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        started = time.perf_counter()
        takes_full = "full" in inspect.signature(module.run).parameters
        extra = {"full": args.full} if takes_full else {}
        for row in module.run(quick=args.quick, **extra):
            rows.append(row)
            mark = "ok" if row.met else "MISSED"
            print(
                f"{row.benchmark:<12} {row.figure:<44} {row.value:>10.4g}{row.unit:>2} {row.floor:>12.4g} "
                f"{row.ratio:>7.3f}  {row.goal} [{mark}]",
                flush=True,
            )
        print(f"  ({name}: {time.perf_counter() - started:.1f} s)", flush=True)
    out = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
        },
        "rows": [{**dataclasses.asdict(r), "met": r.met} for r in rows],
    }
    Path(args.output).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
