"""How fast grading is on this machine, as ratios against the floor measured in the same run.

    .venv/bin/python benchmarks/run.py                        # the default set (about 30 minutes)
    .venv/bin/python benchmarks/run.py --only check,check_template,one --repeat 5
    .venv/bin/python benchmarks/run.py --only class           # 200 submissions (long)
    .venv/bin/python benchmarks/run.py --profile              # also: where one grading spends its time
    make bench

Each measurement is a whole command as its user runs it (a fresh interpreter, wall clock):

==================  =================================================================================
check               ``hw4grade check`` on the correct sample (public tests)
check_template      ``hw4grade check`` on the untouched template (every public test fails)
one                 ``hw4grade grade`` of one submission, ``--no-notebooks``, ``--workers 1``
one_cold            the same, the first time a grading version runs (nothing stored yet: see below)
notebooks           ``hw4grade grade`` of one submission with its notebooks executed
course              the same for a course-format hand-in (the course's own epoch counts), if bundled
batch_w1/w2         ``hw4grade grade`` of 40 submissions (copies of the samples: correct,
                    alternative and buggy in turn), ``--no-notebooks``, 1 / 2 workers
class               the same with 200 submissions and 2 workers (the goal: 15 minutes)
==================  =================================================================================

**The floor** of each (``benchmarks/floor.py``): import torch and run the submission's functions
once with no grader around them. For ``notebooks``/``course``, that plus the seconds the notebook
cells themselves ran (measured inside the kernel); for a batch, the floor times the number of
submissions, divided by the workers.

**One run, ratios**: the machine is shared, so its speed drifts. Each round measures the floor and
then every single-submission measurement once, and each ratio is taken against the floor of its
own round; a batch is preceded by a floor measurement of its own. The table gives the median time,
its spread and the median ratio. The load average before and after says how busy the machine was.

**Bytecode caches**: every command runs with Python's default, ``.pyc`` files written and reused
(``PYTHONDONTWRITEBYTECODE`` is removed from the environment it is given): that is how a student or
CI runs it. With the variable set, each grading compiles the grader and rewrites the rubric tests'
assertions again (measured 2026-12-04: one submission 10.1 s with it, 9.2 s without, floor 5.1 s).

**Stored values**: grading stores the reference's values and the recorded grading examples per
grading version (``grader.refcache``, ``grader.replay``). A benchmark uses a cache folder of its
own: ``one_cold`` runs first, on the empty folder (what the first grading after a change of the
grader costs); every other measurement runs after it, as every later grading does.

Writes ``benchmarks/results/latest.json`` and ``latest.md`` (the README quotes the table) and,
with ``--profile``, ``profile.txt``.
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
TEMPLATE = SAMPLES / "partial" / "untouched_template"
RESULTS = ROOT / "benchmarks" / "results"
SINGLE = ("check", "check_template", "one")
ALL = ("one_cold", *SINGLE, "notebooks", "course", "batch_w1", "batch_w2")
EXTRA = ("class",)
CLASS_SIZE = 200
WHAT = {
    "one_cold": "grade 1 submission, --no-notebooks, first run of a grading version",
    "check": "hw4grade check, correct sample",
    "check_template": "hw4grade check, untouched template",
    "one": "grade 1 submission, --no-notebooks",
    "notebooks": "grade 1 submission, notebooks executed",
    "course": "grade a course-format hand-in, notebooks executed",
}


#: what every measured command runs with: this environment, bytecode caches on (see the module doc)
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run(argv: list[str], env: dict, *, ok: tuple[int, ...] = (0,)) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False, env={**_ENV, **env})
    seconds = time.perf_counter() - started
    if proc.returncode not in ok:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def _floor(submission: Path = CORRECT) -> float:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "floor.py"), str(submission)],
                          capture_output=True, text=True, check=True, cwd=ROOT, env=_ENV)
    return json.loads(proc.stdout.strip().splitlines()[-1])["total"]


def _batch_sources(n: int) -> list[Path]:
    pool = [CORRECT, *sorted((SAMPLES / "alternative").iterdir()), *sorted((SAMPLES / "buggy").iterdir())]
    pool = [p for p in pool if p.is_dir() and not p.name.startswith(("nb_", "course_"))]
    return [pool[i % len(pool)] for i in range(n)]


def _copy(sources: list[Path], dest: Path) -> Path:
    dest.mkdir(parents=True)
    for i, src in enumerate(sources):
        shutil.copytree(src, dest / f"s{i:03d}-{src.name}", ignore=shutil.ignore_patterns("expected.json"))
    return dest


def _course_sample() -> Path | None:
    """A bundled course-format hand-in whose notebooks are graded (the real hand-ins' samples)."""
    for path in sorted(SAMPLES.glob("*/course_*/expected.json")):
        if json.loads(path.read_text()).get("notebook_check"):
            return path.parent
    return None


class Bench:
    def __init__(self, work: Path):
        self.work = work
        self.env = {"HW4_CACHE_DIR": str(work / "cache")}

    def grade(self, subs: Path, *extra: str) -> float:
        out = self.work / f"out-{time.monotonic_ns()}"
        cache = self.work / f"nbcache-{time.monotonic_ns()}"
        seconds = _run([str(BIN / "hw4grade"), "grade", str(subs), "--out", str(out), "--quiet", *extra],
                       {**self.env, "HW4_NOTEBOOK_CACHE": str(cache)})
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        return seconds

    def check(self, folder: Path) -> float:
        return _run([str(BIN / "hw4grade"), "check", str(folder)], self.env, ok=(0, 1))

    def cell_seconds(self, submission: Path) -> float:
        """Seconds the submission's notebook cells ran, inside the kernel (one run)."""
        timing = self.work / f"timings-{time.monotonic_ns()}.json"
        _run([sys.executable, "-m", "grader.notebooks.execute", str(submission), "--timings", str(timing)], self.env)
        data = json.loads(timing.read_text())
        return sum(sum(nb["cells"].values()) for nb in data["notebooks"].values())


def _row(name: str, what: str, times: list[float], floors: list[float]) -> dict:
    ratios = [t / f for t, f in zip(times, floors, strict=True)]
    print(f"{name}: {', '.join(f'{t:.1f}' for t in times)} s; floors {', '.join(f'{f:.1f}' for f in floors)} s",
          flush=True)
    return {"name": name, "what": what, "runs": len(times), "median_s": round(statistics.median(times), 2),
            "min_s": round(min(times), 2), "max_s": round(max(times), 2),
            "floor_s": round(statistics.median(floors), 2), "overhead": round(statistics.median(ratios), 2)}


def measure(only: tuple[str, ...], repeat: int, batch_repeat: int, batch_size: int) -> dict:
    rows, extra = [], {}
    with tempfile.TemporaryDirectory(prefix="hw4-bench-") as tmp:
        bench = Bench(Path(tmp))
        one = _copy([CORRECT], bench.work / "one")
        # first: the grading version's first run (empty cache); later runs find what it stored
        cold_floor = _floor()
        cold = bench.grade(one, "--no-notebooks", "--workers", "1")
        if "one_cold" in only:
            rows.append(_row("one_cold", WHAT["one_cold"], [cold], [cold_floor]))
        singles = [m for m in SINGLE if m in only]
        times: dict[str, list[float]] = {m: [] for m in singles}
        floors: list[float] = []
        for _ in range(repeat if singles else 0):
            floors.append(_floor())
            for m in singles:
                times[m].append(bench.check(CORRECT) if m == "check" else bench.check(TEMPLATE)
                                if m == "check_template" else bench.grade(one, "--no-notebooks", "--workers", "1"))
        rows += [_row(m, WHAT[m], times[m], floors) for m in singles]
        for name, sample in (("notebooks", CORRECT), ("course", _course_sample())):
            if name not in only or sample is None:
                continue
            subs = _copy([sample], bench.work / name)
            cells = bench.cell_seconds(sample)
            extra[f"{name}_cells_s"] = round(cells, 2)
            nb_times, nb_floors = [], []
            for _ in range(repeat):
                nb_floors.append(_floor() + cells)
                nb_times.append(bench.grade(subs, "--workers", "1"))
            rows.append(_row(name, WHAT[name], nb_times, nb_floors))
        batches = [(s, batch_size, int(s[-1])) for s in ("batch_w1", "batch_w2") if s in only]
        batches += [("class", CLASS_SIZE, 2)] if "class" in only else []
        for name, size, workers in batches:
            subs = _copy(_batch_sources(size), bench.work / f"{name}-subs")
            b_times, b_floors = [], []
            for _ in range(batch_repeat if name != "class" else 1):
                # every sample is the correct one with one edit, doing the same work: the batch's
                # floor is the correct sample's, once per submission, shared by the workers
                b_floors.append(_floor() * size / workers)
                b_times.append(bench.grade(subs, "--no-notebooks", "--workers", str(workers)))
            rows.append(_row(name, f"grade {size} submissions, --no-notebooks, {workers} worker(s)",
                             b_times, b_floors))
            extra[f"{name}_per_submission_s"] = round(statistics.median(b_times) / size, 2)
        by = {r["name"]: r for r in rows}
        if {"batch_w1", "batch_w2"} <= by.keys():
            extra["speedup_2_workers"] = round(by["batch_w1"]["median_s"] / by["batch_w2"]["median_s"], 2)
        if "batch_w2" in by:
            extra["class_estimate_s"] = round(by["batch_w2"]["median_s"] / batch_size * CLASS_SIZE, 1)
        extra["floor_one_s"] = round(statistics.median(floors), 2) if floors else round(cold_floor, 2)
    return {"rows": rows, **extra}


def profile(top: int = 25) -> str:
    """Where one grading of the correct sample (--no-notebooks, stored values present) spends the
    trusted process's time: cProfile, by own time and by cumulative time in the grader's code.
    Time spent waiting for the sandboxed worker shows as ``acquire`` (the worker's own work)."""
    import cProfile
    import io
    import pstats

    sys.path.insert(0, str(ROOT))
    from grader.grade import GradeOptions, grade_submission

    grade_submission(CORRECT, "warm", GradeOptions(notebooks=False))  # what a first run stores
    prof = cProfile.Profile()
    started = time.perf_counter()
    prof.enable()
    grade_submission(CORRECT, "profiled", GradeOptions(notebooks=False))
    prof.disable()
    wall = time.perf_counter() - started
    out = io.StringIO()
    out.write(f"One grading of the correct sample, --no-notebooks, under cProfile: {wall:.1f} s wall.\n\n")
    stats = pstats.Stats(prof, stream=out).strip_dirs()
    out.write("By own time:\n")
    stats.sort_stats("tottime").print_stats(top)
    out.write("By cumulative time, the grader's and the tests' own functions:\n")
    stats.sort_stats("cumulative").print_stats(r"grader|rubric|reference|refcache|replay", top)
    return out.getvalue()


def _profile_lines(text: str, n: int = 12) -> list[str]:
    """The first ``n`` rows of the by-own-time table."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), None)
    return [] if start is None else lines[start:start + 1 + n]


def markdown(report: dict) -> str:
    lines = [
        f"Measured {report['date']} on {report['machine']} ({report['cpus']} CPUs, shared with other work: "
        f"load average {report['load_before']:.1f} before, {report['load_after']:.1f} after), isolation "
        f"`{report['isolation']}`; Python's bytecode caches on; medians of the runs shown, each ratio against "
        "the floor measured in its own round.",
        "",
        "| measurement | runs | median | min–max | floor | median ÷ floor |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(f"| {r['what']} | {r['runs']} | {r['median_s']:.1f} s | {r['min_s']:.1f}–{r['max_s']:.1f} s "
                     f"| {r['floor_s']:.1f} s | {r['overhead']:.2f}× |")
    lines.append("")
    lines.append(f"Floor of one submission (import torch, run its functions once): {report['floor_one_s']:.1f} s.")
    for name in ("notebooks", "course"):
        if f"{name}_cells_s" in report:
            lines.append(f"The {name} sample's notebook cells ran {report[f'{name}_cells_s']:.1f} s inside the kernel.")
    if "speedup_2_workers" in report:
        lines.append(f"2 workers vs 1 on the batch: {report['speedup_2_workers']:.2f}× the throughput.")
    if "class_estimate_s" in report:
        lines.append(f"At the 2-worker batch's rate, 200 submissions take about {report['class_estimate_s'] / 60:.1f} "
                     "min (goal: 15).")
    if report.get("profile_top"):
        lines += ["", "Where one grading spends the trusted process's time (`--profile`, by own time; "
                  "`acquire` is waiting for the sandboxed worker; full listing in `profile.txt`):", "", "```",
                  *report["profile_top"], "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(ALL),
                        help=f"comma-separated subset of {','.join(ALL + EXTRA)} (default: all but class)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the single-submission measurements")
    parser.add_argument("--batch-repeat", type=int, default=2, help="runs of each 40-submission batch")
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--profile", action="store_true", help="also profile one grading (profile.txt)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for latest.json and latest.md")
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(only) - set(ALL + EXTRA)
    if unknown:
        parser.error(f"--only: unknown measurement(s) {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(ALL + EXTRA)}")
    sys.path.insert(0, str(ROOT))
    from grader.sandbox.launcher import detect_isolation

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}",
        "cpus": len(os.sched_getaffinity(0)),
        "isolation": detect_isolation("auto").level,
        "load_before": os.getloadavg()[0],
    }
    report.update(measure(only, args.repeat, args.batch_repeat, args.batch_size))
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="hw4-bench-profile-") as tmp:
            os.environ["HW4_CACHE_DIR"] = tmp
            text = profile()
        (args.out / "profile.txt").write_text(text)
        report["profile_top"] = _profile_lines(text)
    report["load_after"] = os.getloadavg()[0]
    (args.out / "latest.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "latest.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
