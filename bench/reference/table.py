#!/usr/bin/env python3
"""The comparison table of bench/compare.sh (standard library only).

    table.py annotate KEY=VALUE...        copies JSON lines from stdin to stdout, adding fields
    table.py render RUN.jsonl [--notes NOTES.txt] [--md OUT.md] [--title TEXT]
    table.py ratio ROWS.jsonl... [--ours cuda] [--reference torch] [--md OUT.md] [--title TEXT]

`render` prints a Markdown table, one row per (workload, ordering, threads), one column per
side: ours (`cpu`, `blas`) and each reference, each cell the median time of one call and its
rate; the last column is the best reference's median time over our `cpu` backend's (above 1:
ours is faster) and names that reference. A side with no row for a case shows "-"; a side with
several (compare.sh --rounds) shows its fastest median.

`ratio` compares one of our backends with one reference, e.g. the JSON lines of
`keras-cli bench --backend cuda --json` and of `bench.py --framework torch --json`, in one
file or several (`-` is stdin): one row per (workload, ordering), matched on those two fields
only (not on threads: a GPU run's thread count says little); each side's median time and rate,
then the reference's median over ours (above 1: ours is faster). A side is the rows whose
`tag`, else `backend`, is the name given; where a side has several rows for a case, the last
one read counts.
"""

import argparse
import json
import math
import sys

from common import WORKLOADS  # standard library only: no framework needed to print the table
OURS = ["cpu", "blas"]
REFERENCES = ["numpy-env", "numpy-unset", "jax", "tensorflow", "keras3-jax", "keras3-tf"]


def annotate(pairs):
    extra = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            print(line, file=sys.stderr)  # not a row: pass it on as a note
            continue
        if isinstance(row, dict):
            row.update(extra)
            print(json.dumps(row), flush=True)


def column_of(row):
    return row.get("tag") or row.get("backend")


def fmt_time(s):
    if s is None or not math.isfinite(s):
        return "-"
    if s >= 1.0:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms" if s < 0.1 else f"{s * 1e3:.0f} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_rate(r):
    if r is None or not math.isfinite(r):
        return "-"
    if r >= 100:
        return f"{r:.0f}"
    if r >= 10:
        return f"{r:.1f}"
    return f"{r:.2f}"


def header_of(column, rows):
    if column in OURS:
        return f"ours {column}"
    if column.startswith("numpy-"):
        archs = sorted({r.get("architecture", "?") for r in rows if column_of(r) == column})
        arch = "/".join(archs) if archs else "?"
        return f"numpy ({arch})" if column == "numpy-env" else f"numpy ({arch}, unset)"
    return column


def faster(row, other):
    """Whether `row`'s median is below `other`'s (a missing or non-finite one never is)."""
    t, u = row.get("median_s"), other.get("median_s")
    if t is None or not math.isfinite(t):
        return False
    return u is None or not math.isfinite(u) or t < u


def render(path, notes_path, md_path, title):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    columns = OURS + REFERENCES
    extra = sorted({column_of(r) for r in rows} - set(columns))
    # Only reference runs (rows with a `tag`) are compared against: another plugin of ours that
    # `--backend all` found is shown, not used as a reference.
    extra_references = sorted({r["tag"] for r in rows if r.get("tag")} - set(columns))
    columns += extra
    # With several rounds (compare.sh --rounds), a cell is its side's fastest median of them.
    cells = {}
    for row in rows:
        threads = row.get("pinned_threads", row.get("threads"))
        key = (row["workload"], row.get("ordering"), threads, column_of(row))
        if key not in cells or faster(row, cells[key]):
            cells[key] = row
    keys = sorted(
        {(w, o, t) for (w, o, t, _) in cells},
        key=lambda k: (k[2] if k[2] is not None else 0, WORKLOADS.index(k[0]) if k[0] in WORKLOADS else 99,
                       k[1] or ""),
    )
    present = [c for c in columns if any(column_of(r) == c for r in rows)]
    missing = [c for c in columns if c not in present]
    headers = {c: header_of(c, rows) for c in columns}

    out = []
    if title:
        out += [f"## {title}", ""]
    out.append("Each cell: median time of one call · rate (unit column; for ns/op lower is better). "
               "Last column: best reference time / ours cpu time (>1: ours cpu is faster).")
    out.append("")
    head = ["workload", "ord", "thr", "unit"] + [headers[c] for c in columns] + ["cpu vs best reference"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---"] * 4 + ["---:"] * (len(columns) + 1)) + "|")
    for workload, ordering, threads in keys:
        unit = next((cells[(workload, ordering, threads, c)]["rate_unit"] for c in columns
                     if (workload, ordering, threads, c) in cells), "-")
        line = [workload, ordering or "", str(threads), unit]
        for c in columns:
            row = cells.get((workload, ordering, threads, c))
            line.append("-" if row is None else f"{fmt_time(row['median_s'])} · {fmt_rate(row['rate'])}")
        cpu = cells.get((workload, ordering, threads, "cpu"))
        refs = [(cells[(workload, ordering, threads, c)]["median_s"], c) for c in REFERENCES + extra_references
                if (workload, ordering, threads, c) in cells]
        refs = [(t, c) for t, c in refs if t is not None and math.isfinite(t)]
        if cpu is None or not refs:
            line.append("-")
        else:
            best_t, best_c = min(refs)
            line.append(f"{best_t / cpu['median_s']:.2f}× ({headers[best_c]})")
        out.append("| " + " | ".join(line) + " |")

    out.append("")
    out.append("Columns (library; device line as each run reported it, per thread count):")
    out.append("")
    for c in present:
        devices = []
        for row in rows:
            if column_of(row) == c:
                threads = row.get("pinned_threads", row.get("threads"))
                item = f"{threads} thr: {row.get('device')}"
                if item not in devices:
                    devices.append(item)
        library = next((r.get("library") for r in rows if column_of(r) == c), None) or "built-in"
        out.append(f"* {headers[c]}: {library}; " + " | ".join(devices))
    row_notes = {}
    for row in rows:
        if row.get("notes"):
            case = row["workload"] + (f":{row['ordering']}" if row.get("ordering") else "")
            cases = row_notes.setdefault((column_of(row), row["notes"]), [])
            if case not in cases:
                cases.append(case)
    if row_notes:
        out.append("")
        out.append("Row notes:")
        out.append("")
        for (c, text), cases in row_notes.items():
            out.append(f"* {headers[c]} {', '.join(cases)}: {text}")
    memory = [r for r in cells.values() if r.get("peak_over_live_set") is not None]
    if memory:
        out.append("")
        out.append("Memory over a long run (train-memory: the MLP step, RSS in MiB):")
        out.append("")
        mib = lambda r, k: "-" if r.get(k) is None else f"{r[k] / 1048576:.1f}"
        for r in memory:
            threads = r.get("pinned_threads", r.get("threads"))
            out.append(f"* {headers[column_of(r)]}, {threads} thr, {r.get('steps')} steps: "
                       f"{mib(r, 'rss_after_warmup_bytes')} after the warm-up, {mib(r, 'rss_after_steps_bytes')} at the end, "
                       f"peak {mib(r, 'peak_rss_bytes')}; peak above the {mib(r, 'baseline_rss_bytes')} baseline = "
                       f"{r['peak_over_live_set']:.2f}× the live set of {mib(r, 'live_set_bytes')}, mapped files included")
            if r.get("peak_anon_over_live_set") is not None:
                exactness = "exact, mapped files made resident first" if r.get("mapped_populated") else "upper bound"
                out.append(f"  anonymous memory (heap, stacks): peak {mib(r, 'peak_anon_rss_bytes')} ({exactness}), "
                           f"{mib(r, 'baseline_anon_rss_bytes')} before the workload = "
                           f"{r['peak_anon_over_live_set']:.2f}× the live set; "
                           f"{mib(r, 'heap_released_before_run_bytes')} of heap freed by the set-up returned before the run; "
                           f"mapped code and data "
                           f"{mib(r, 'mapped_rss_after_warmup_bytes')} after the warm-up, "
                           f"{mib(r, 'mapped_rss_after_steps_bytes')} at the end")
    if missing:
        out.append("")
        out.append("No rows from: " + ", ".join(headers[c] for c in missing) + " (columns shown as \"-\").")
    if notes_path:
        try:
            with open(notes_path) as f:
                # Each round repeats the run's notes: print each once.
                notes = list(dict.fromkeys(n.rstrip() for n in f if n.strip()))
        except OSError:
            notes = []
        if notes:
            out.append("")
            out.append("Notes from the run:")
            out.append("")
            out += [f"* {n}" for n in notes]
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if md_path:
        with open(md_path, "w") as f:
            f.write(text)


def read_rows(paths):
    """Every JSON object of the files' lines (`-`: stdin); other lines are skipped."""
    rows = []
    for path in paths:
        f = sys.stdin if path == "-" else open(path)
        with f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and "workload" in row:
                    rows.append(row)
    return rows


def ratio(paths, ours, reference, md_path, title):
    sides = {ours: {}, reference: {}}
    repeated = set()
    for row in read_rows(paths):
        side = sides.get(column_of(row))
        if side is None:
            continue
        key = (row["workload"], row.get("ordering"))
        if key in side:
            repeated.add((column_of(row), key))
        side[key] = row
    order = lambda k: (WORKLOADS.index(k[0]) if k[0] in WORKLOADS else len(WORKLOADS), k[0], k[1] or "")
    keys = sorted(set(sides[ours]) | set(sides[reference]), key=order)
    out = [f"## {title}", ""] if title else []
    out.append(f"Each cell: median time of one call · rate (unit column; for ns/op lower is better). "
               f"Last column: {reference} time / {ours} time (>1: {ours} is faster).")
    out.append("")
    out.append(f"| workload | ord | unit | {ours} | {reference} | {reference} / {ours} |")
    out.append("|---|---|---|---:|---:|---:|")
    for key in keys:
        a, b = sides[ours].get(key), sides[reference].get(key)
        unit = (a or b).get("rate_unit", "-")
        cell = lambda r: "-" if r is None else f"{fmt_time(r.get('median_s'))} · {fmt_rate(r.get('rate'))}"
        times = [r.get("median_s") if r else None for r in (a, b)]
        if all(t is not None and math.isfinite(t) and t > 0 for t in times):
            quotient = f"{times[1] / times[0]:.2f}×"
        else:
            quotient = "-"
        out.append(f"| {key[0]} | {key[1] or ''} | {unit} | {cell(a)} | {cell(b)} | {quotient} |")
    out.append("")
    for name in (ours, reference):
        rows = list(sides[name].values())
        if not rows:
            out.append(f"* {name}: no rows")
            continue
        devices = list(dict.fromkeys(str(r.get("device")) for r in rows))
        libraries = list(dict.fromkeys(str(r.get("library") or "built-in") for r in rows))
        out.append(f"* {name}: {'; '.join(libraries)}; {' | '.join(devices)}")
    notes = {}
    for row in sides[reference].values():
        if row.get("notes"):
            notes.setdefault(row["notes"], []).append(row["workload"] + (f":{row['ordering']}" if row.get("ordering") else ""))
    for text, cases in notes.items():
        out.append(f"* {reference} {', '.join(cases)}: {text}")
    if repeated:
        out.append("* several rows for " + ", ".join(f"{c} {w}{':' + o if o else ''}" for c, (w, o) in sorted(repeated, key=str))
                   + ": the last one read is shown")
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if md_path:
        with open(md_path, "w") as f:
            f.write(text)
    return 0 if sides[ours] and sides[reference] else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("annotate")
    a.add_argument("pairs", nargs="*")
    r = sub.add_parser("render")
    r.add_argument("jsonl")
    r.add_argument("--notes")
    r.add_argument("--md")
    r.add_argument("--title")
    q = sub.add_parser("ratio", help="one backend of ours against one reference, matched on workload + ordering")
    q.add_argument("jsonl", nargs="+", help="files of JSON lines (`-`: stdin)")
    q.add_argument("--ours", default="cuda", help="our side: a backend name or tag (default cuda)")
    q.add_argument("--reference", default="torch", help="the reference: a backend name or tag (default torch)")
    q.add_argument("--md")
    q.add_argument("--title")
    args = parser.parse_args()
    if args.command == "annotate":
        annotate(args.pairs)
    elif args.command == "ratio":
        return ratio(args.jsonl, args.ours, args.reference, args.md, args.title)
    else:
        render(args.jsonl, args.notes, args.md, args.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
