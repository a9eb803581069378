"""How fast grading is on this machine, next to the floor of each measurement.

    .venv/bin/python benchmarks/run.py                  # everything (about an hour on 2 cores)
    .venv/bin/python benchmarks/run.py --only selfcheck,one --repeat 5
    make bench

Each measurement is a whole command as its user runs it (a fresh interpreter, wall clock),
repeated ``--repeat`` times; the table gives the median and the spread:

==============  ======================================================================
selfcheck       ``hw4grade check`` on the correct sample (public tests)
one             ``hw4grade grade`` of one submission, ``--no-notebooks``, ``--workers 1``
notebooks       ``hw4grade grade`` of one submission with its notebooks executed
batch_w1/w2     ``hw4grade grade`` of a 40-submission batch (copies of the samples:
                correct, alternative and buggy in turn), ``--no-notebooks``, 1 / 2 workers
==============  ======================================================================

The floor of each (``benchmarks/floor.py``): import torch and run the submission's functions once
with no grader around them. For ``notebooks``, that plus the seconds the notebook cells themselves
ran (measured inside the kernel); for a batch, the correct sample's floor times the number of
submissions, divided by the workers. ``overhead`` = median ÷ floor. Every run starts from an empty output folder and an
empty notebook cache, so nothing is resumed.

Writes ``benchmarks/results/latest.json`` and ``latest.md`` (the README quotes the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SAMPLES = ROOT / "fixtures" / "submissions"
CORRECT = SAMPLES / "correct" / "reference"
RESULTS = ROOT / "benchmarks" / "results"
ALL = ("selfcheck", "one", "notebooks", "batch_w1", "batch_w2")


def _run(argv: list[str], *, ok: tuple[int, ...] = (0,), env: dict | None = None) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False,
                          env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - started
    if proc.returncode not in ok:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def _floor(submission: Path) -> float:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "floor.py"), str(submission)],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])["total"]


def _batch_sources(n: int) -> list[Path]:
    pool = [CORRECT, *sorted((SAMPLES / "alternative").iterdir()), *sorted((SAMPLES / "buggy").iterdir())]
    pool = [p for p in pool if p.is_dir() and not p.name.startswith("nb_")]
    return [pool[i % len(pool)] for i in range(n)]


def _copy(sources: list[Path], dest: Path) -> Path:
    dest.mkdir(parents=True)
    for i, src in enumerate(sources):
        shutil.copytree(src, dest / f"s{i:03d}-{src.name}",
                        ignore=shutil.ignore_patterns("expected.json"))
    return dest


def _grade(subs: Path, work: Path, *extra: str) -> float:
    out = work / f"out-{time.monotonic_ns()}"
    cache = work / f"cache-{time.monotonic_ns()}"
    seconds = _run([str(BIN / "hw4grade"), "grade", str(subs), "--out", str(out), "--quiet", *extra],
                   env={"HW4_NOTEBOOK_CACHE": str(cache)})
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return seconds


def _cell_seconds(work: Path) -> float:
    """Seconds the correct sample's notebook cells ran, inside the kernel (one run)."""
    timing = work / "timings.json"
    _run([sys.executable, "-m", "grader.notebooks.execute", str(CORRECT), "--timings", str(timing)])
    data = json.loads(timing.read_text())
    return sum(sum(nb["cells"].values()) for nb in data["notebooks"].values())


def _row(name: str, what: str, times: list[float], floor: float) -> dict:
    print(f"{name}: {', '.join(f'{t:.1f}' for t in times)} s (floor {floor:.1f} s)", flush=True)
    med = statistics.median(times)
    return {"name": name, "what": what, "runs": len(times), "median_s": round(med, 2),
            "min_s": round(min(times), 2), "max_s": round(max(times), 2),
            "floor_s": round(floor, 2), "overhead": round(med / floor, 2)}


def measure(only: tuple[str, ...], repeat: int, batch_repeat: int, batch_size: int) -> dict:
    rows, extra = [], {}
    with tempfile.TemporaryDirectory(prefix="hw4-bench-") as tmp:
        work = Path(tmp)
        floor_one = statistics.median(_floor(CORRECT) for _ in range(repeat))
        extra["floor_one_s"] = round(floor_one, 2)
        if "selfcheck" in only:
            t = [_run([str(BIN / "hw4grade"), "check", str(CORRECT)]) for _ in range(repeat)]
            rows.append(_row("selfcheck", "hw4grade check, correct sample", t, floor_one))
        one = _copy([CORRECT], work / "one")
        if "one" in only:
            t = [_grade(one, work, "--no-notebooks", "--workers", "1") for _ in range(repeat)]
            rows.append(_row("one", "grade 1 submission, --no-notebooks", t, floor_one))
        if "notebooks" in only:
            cells = _cell_seconds(work)
            extra["notebook_cells_s"] = round(cells, 2)
            t = [_grade(one, work, "--workers", "1") for _ in range(repeat)]
            rows.append(_row("notebooks", "grade 1 submission, notebooks executed", t, floor_one + cells))
        batch = [s for s in ("batch_w1", "batch_w2") if s in only]
        if batch:
            sources = _batch_sources(batch_size)
            subs = _copy(sources, work / "batch")
            # Every sample is the correct one with one edit, doing the same work: the batch's floor
            # is the correct sample's, once per submission (a buggy function may not even run
            # outside the grader's layouts and guards, so its own floor is not measurable).
            total_floor = batch_size * floor_one
            for name in batch:
                workers = int(name[-1])
                t = [_grade(subs, work, "--no-notebooks", "--workers", str(workers))
                     for _ in range(batch_repeat)]
                rows.append(_row(name, f"grade {batch_size} submissions, --no-notebooks, {workers} worker(s)",
                                 t, total_floor / workers))
            by = {r["name"]: r for r in rows}
            if {"batch_w1", "batch_w2"} <= by.keys():
                extra["speedup_2_workers"] = round(by["batch_w1"]["median_s"] / by["batch_w2"]["median_s"], 2)
    return {"rows": rows, **extra}


def markdown(report: dict) -> str:
    lines = [
        f"Measured {report['date']} on {report['machine']} ({report['cpus']} CPUs), "
        f"isolation `{report['isolation']}`; medians of the runs shown.",
        "",
        "| measurement | runs | median | min–max | floor | overhead (median ÷ floor) |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(f"| {r['what']} | {r['runs']} | {r['median_s']:.1f} s | {r['min_s']:.1f}–{r['max_s']:.1f} s "
                     f"| {r['floor_s']:.1f} s | {r['overhead']:.2f}× |")
    lines.append("")
    lines.append(f"Floor of one submission (import torch, run its functions once): {report['floor_one_s']:.1f} s.")
    if "notebook_cells_s" in report:
        lines.append(f"The correct sample's notebook cells ran {report['notebook_cells_s']:.1f} s inside the kernel.")
    if "speedup_2_workers" in report:
        lines.append(f"2 workers vs 1 on the batch: {report['speedup_2_workers']:.2f}× the throughput.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each single-submission measurement")
    parser.add_argument("--batch-repeat", type=int, default=3, help="runs of each batch measurement")
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for latest.json and latest.md")
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(only) - set(ALL)
    if unknown:
        parser.error(f"--only: unknown measurement(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL)}")
    sys.path.insert(0, str(ROOT))
    from grader.sandbox.launcher import detect_isolation

    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}",
        "cpus": len(os.sched_getaffinity(0)),
        "isolation": detect_isolation("auto").level,
        **measure(only, args.repeat, args.batch_repeat, args.batch_size),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "latest.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
