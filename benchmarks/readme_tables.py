"""The README's speed table, rendered from ``run_all.py`` JSONs and written between its marker comments.

``python benchmarks/readme_tables.py benchmarks/results/all_<gpu>.json`` replaces the text between
``<!-- speed-table:start -->`` and ``<!-- speed-table:end -->`` in README.md with a line naming the JSON, the GPU,
the versions and the date, and one table row per comparison (formers' figure, the peer's, the ratio, issue 15's
target and whether it is met), followed by the benchmarks that did not finish. ``--check`` writes nothing and exits
with status 1 when the README's table is not what the JSON renders (a hand edit, or a newer JSON not yet rendered).
Nothing here measures: every figure is read from the JSON.

Several JSONs (``readme_tables.py A.json B.json``): a benchmark found in a later one replaces the earlier one's, and
its rows name the JSON they come from; each row's ratio still comes from one run (formers and the peer measured side
by side), and the header gives every run's machine, versions and date.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
START = "<!-- speed-table:start -->"
END = "<!-- speed-table:end -->"


def number(value: float | None, unit: str = "") -> str:
    """``1234.5`` -> ``1,234``; ``12.34`` -> ``12.3``; a fraction unit -> percent; None -> ``-``."""
    if value is None:
        return "-"
    if unit == "fraction":
        return f"{100 * value:.0f}%"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def target(row: dict[str, Any]) -> str:
    parts = []
    if row.get("target_ratio") is not None:
        parts.append(f">= {row['target_ratio']:g}x")
    if row.get("target_value") is not None:
        unit = row["unit"]
        parts.append(f">= {number(row['target_value'], unit)}" + ("" if unit == "fraction" else f" {unit}"))
    return ", ".join(parts) or "-"


def header(report: dict[str, Any], source: str, rendered_by: str | None = None) -> str:
    v = report.get("versions", {})
    gpu = report.get("gpu") or "no GPU"
    soft = [f"torch {v.get('torch')} (CUDA {v.get('cuda')}, cuDNN {v.get('cudnn')})"]
    soft += [f"{name} {v[name]}" for name in ("transformers", "timm", "gensim") if v.get(name)]
    commit = f", formers {v['formers_commit']}" if v.get("formers_commit") else ""
    smoke = (" **Smoke run on the CPU (tiny models): it checks the harness and measures nothing.**"
             if report.get("smoke") else "")
    runs = report.get("runs") or [None]
    how = "one run" if len(runs) == 1 else f"{len(runs)} consecutive runs (`--append`)"
    return (f"Speed against the peers from {how} on one machine, `{report.get('command')}` "
            f"(`{source}`): {gpu}; {', '.join(soft)}{commit}; {report.get('date')}. Ratios are formers / peer in "
            f"the same run; targets are issue 15's. Rendered by `python benchmarks/readme_tables.py "
            f"{rendered_by or source}`.{smoke}")


def render(report: dict[str, Any] | list[tuple[dict[str, Any], str]], source: str = "") -> str:
    """The whole block, markers included, for ``report`` (a run_all.py JSON) read from ``source``, or for a list of
    (report, source), later benchmarks replacing earlier ones of the same name."""
    reports = report if isinstance(report, list) else [(report, source)]
    command = " ".join(s for _, s in reports)
    if len(reports) == 1:
        lines = [START, header(*reports[0], command)]
    else:
        lines = [START, f"Rows from {len(reports)} runs, rendered by `python benchmarks/readme_tables.py {command}` "
                 "(a benchmark of a later JSON replaces an earlier one's; rows name their JSON where it is not the "
                 "first):", ""]
        lines += [f"- {header(r, s, command)}" for r, s in reports]
    lines += ["", "| workload | formers | peer | formers / peer | target | met |", "|---|---|---|---|---|---|"]
    merged: dict[str, tuple[dict[str, Any], str]] = {}
    for one, where in reports:
        for name, bench in one.get("benchmarks", {}).items():
            merged.pop(name, None)  # re-inserted at the end: the later run's order
            merged[name] = (bench, where)
    missing = []
    for name, (bench, where) in merged.items():
        if bench.get("status") != "ok":
            why = {"timeout": f"timed out after {bench.get('timeout_s', 0):g} s",
                   "failed": f"failed (exit code {bench.get('returncode')})",
                   "skipped": f"skipped ({bench.get('reason', '')})"}.get(bench.get("status"), bench.get("status"))
            missing.append(f"`{name}` {why}")
        if "rows_error" in bench:
            missing.append(f"`{name}` result unreadable ({bench['rows_error']})")
        tag = f"`{Path(where).name}`" if where != reports[0][1] else ""
        for r in bench.get("rows", []):
            unit = r["unit"]
            ours = number(r["formers"], unit) + ("" if r["formers"] is None or unit == "fraction" else f" {unit}")
            peer = f"{r['peer_name']}: {number(r['peer'], unit)}" if r.get("peer_name") else "-"
            ratio = f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "-"
            met = {True: "yes", False: "no", None: "-"}[r.get("met")]
            notes = "; ".join(n for n in (r.get("note"), tag) if n)
            workload = r["workload"] + (f" ({notes})" if notes else "")
            lines.append(f"| {workload} | {ours} | {peer} | {ratio} | {target(r)} | {met} |")
    if missing:
        lines += ["", "Not measured in this run: " + "; ".join(missing) + "."]
    lines.append(END)
    return "\n".join(lines)


def replace_block(readme: str, block: str) -> str:
    """``readme`` with the text from START to END (markers included) replaced by ``block``."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {START} ... {END} block to replace")
    return readme[:start] + block + readme[end + len(END):]


def source_name(path: Path) -> str:
    """The JSON's path relative to the repository where it lies inside it (what the README quotes)."""
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.as_posix()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, nargs="+",
                        help="benchmarks/run_all.py results (a later one's benchmarks replace an earlier one's)")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when the README differs from the rendering")
    args = parser.parse_args(argv)
    reports = []
    for path in args.json:
        report = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(report, dict) or "benchmarks" not in report:
            raise SystemExit(f"readme_tables.py: {path} is not a run_all.py result (no 'benchmarks' key)")
        reports.append((report, source_name(path)))
    names = " ".join(str(p) for p in args.json)
    readme = args.readme.read_text(encoding="utf-8")
    try:
        updated = replace_block(readme, render(reports))
    except ValueError as e:
        raise SystemExit(f"readme_tables.py: {args.readme}: {e}") from None
    if args.check:
        if updated != readme:
            print(f"{args.readme}: the speed table differs from what {names} renders; run "
                  f"`python benchmarks/readme_tables.py {names}`", file=sys.stderr)
            return 1
        print(f"{args.readme}: the speed table matches {names}")
        return 0
    tmp = args.readme.with_name(f".{args.readme.name}.tmp")
    tmp.write_text(updated, encoding="utf-8")
    os.replace(tmp, args.readme)
    print(f"wrote the speed table of {names} into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
