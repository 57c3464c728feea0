"""The rating hot path of two checkouts side by side: before and after a change.

Runs ``bench/hotpath.py`` from checkout A, then from checkout B, in turn,
``--runs`` times each, on the same seeded PostgreSQL database and with the
same interpreter, and prints each run's CPU medians per request and the
median of B/A over the runs. Alternating cancels most of the machine's
drift; the ratio is the figure to read, not the milliseconds.

    python bench/hotpath_ab.py --a ../old-checkout --b . [--runs 5] [--pairs 300]

Both checkouts must share the database's schema. An older checkout whose
``bench/hotpath.py`` cannot reseed a database holding audit events needs
this checkout's copy of that file.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

LINE = re.compile(
    r"^(?P<policy>\w+)\s+(?P<kind>next|submit)\s+n=\d+\s+"
    r"CPU\s+(?P<cpu>[\d.]+) ms median"
    r".*wall\s+(?P<wall>[\d.]+) ms median; (?P<sql>[\d.]+) SQL"
)


def hotpath(checkout: Path, pairs: int) -> dict[str, tuple[float, float, float]]:
    """One run: {kind: (CPU ms median, wall ms median, SQL statements)}."""
    out = subprocess.run(
        [sys.executable, "bench/hotpath.py", "--pairs", str(pairs)],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
    )
    found = {}
    for line in (out.stdout + out.stderr).splitlines():
        match = LINE.match(line.strip())
        if match:
            found[match["kind"]] = (
                float(match["cpu"]),
                float(match["wall"]),
                float(match["sql"]),
            )
    if set(found) != {"next", "submit"}:
        raise SystemExit(f"{checkout}: no figures in hotpath's output:\n{out.stderr}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="the checkout before")
    parser.add_argument("--b", type=Path, required=True, help="the checkout after")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=300)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, tuple[float, float, float]]]] = {"a": [], "b": []}
    for i in range(args.runs):
        for name in ("a", "b"):
            result = hotpath(getattr(args, name), args.pairs)
            runs[name].append(result)
            print(
                f"run {i + 1} {name.upper()}: "
                + "; ".join(
                    f"{kind} CPU {cpu:.2f} ms, wall {wall:.2f} ms, {sql:g} SQL"
                    for kind, (cpu, wall, sql) in sorted(result.items())
                ),
                flush=True,
            )
    for kind in ("next", "submit"):
        cpu = [
            b[kind][0] / a[kind][0] for a, b in zip(runs["a"], runs["b"], strict=True)
        ]
        wall = [
            b[kind][1] / a[kind][1] for a, b in zip(runs["a"], runs["b"], strict=True)
        ]
        print(
            f"B/A {kind}: CPU {statistics.median(cpu):.3f}x "
            f"(runs {min(cpu):.2f}-{max(cpu):.2f}), wall "
            f"{statistics.median(wall):.3f}x; SQL "
            f"{runs['a'][0][kind][2]:g} -> {runs['b'][0][kind][2]:g}"
        )


if __name__ == "__main__":
    main()
