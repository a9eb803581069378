"""Run a submission's notebooks in fast grading mode from the command line.

    .venv/bin/python -m grader.notebooks.execute DIR              # run, print a summary
    .venv/bin/python -m grader.notebooks.execute DIR --store      # ... and save the outputs
                                                                  #     into DIR's notebooks
    .venv/bin/python -m grader.notebooks.execute DIR --timings build/notebook-timings.json

``--store`` is how the solution sample ``fixtures/submissions/correct/reference`` gets real saved
outputs, as a student's hand-in has (the lab2.a check requires them): the run happens in the
sandbox exactly as in grading, then each code cell of the handed-in notebook receives the
executed cell's outputs and execution count (figures as text only, see ``_clean``). Sources,
cell ids and metadata stay as they were, so ``hw4grade assign --check`` (which compares sources)
still passes, and ``python -m fixtures.samples.build`` passes the outputs on to every sample
derived from it. A notebook whose run did not finish cleanly is not stored. Run it again after a
change to ``reference/handout/`` (``hw4grade assign`` then rewrites the notebook without outputs):

    .venv/bin/python -m grader.notebooks.execute fixtures/submissions/correct/reference --store
    .venv/bin/python -m fixtures.samples.build
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main", "store_outputs"]


def store_outputs(session, kinds: tuple[str, ...] = ("hw4", "lab1")) -> list[Path]:
    """Write each run's outputs into the submission's own notebook; return the files written.

    Raises:
        RuntimeError: a notebook's run ended with failed cells (storing them would hide a bug).
    """
    written = []
    for kind in kinds:
        run = session.runs.get(kind)
        if run is None or not run.file.endswith(".ipynb"):
            continue
        if run.status != "finished" or run.failed_cells():
            problems = "; ".join(run.describe_failure(c) for c in run.failed_cells()) or run.status
            raise RuntimeError(f"{run.file}: not storing the outputs of a run that failed: {problems}")
        executed = json.loads((run.folder / "executed.ipynb").read_text(encoding="utf-8"))
        path = session.root / run.file
        original = json.loads(path.read_text(encoding="utf-8"))
        if len(executed["cells"]) != len(original["cells"]):
            raise RuntimeError(f"{run.file}: the executed notebook has a different number of cells")
        for mine, ran in zip(original["cells"], executed["cells"], strict=True):
            if mine.get("cell_type") != "code":
                continue
            mine["outputs"] = [_clean(o) for o in ran.get("outputs", [])]
            mine["execution_count"] = ran.get("execution_count")
        path.write_text(json.dumps(original, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _clean(output: dict) -> dict:
    """An output without the run's timing metadata, and figures without their pixels.

    Every sample in the repository derives from the solution sample: 14 Lab 1 figures as PNG
    would add 0.7 MB to each of them. No check reads saved pixels (the Lab 1 checks look at the
    figures the grading run itself draws), so a figure keeps only its text form.
    """
    out = dict(output)
    if "metadata" in out and isinstance(out["metadata"], dict):
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k != "execution"}
    if isinstance(out.get("data"), dict) and "image/png" in out["data"]:
        text = {k: v for k, v in out["data"].items() if k == "text/plain"}
        out["data"] = text or {"text/plain": "<Figure>"}
        if isinstance(out.get("metadata"), dict):
            out["metadata"] = {k: v for k, v in out["metadata"].items() if k != "image/png"}
    return out


def main(argv: list[str] | None = None) -> int:
    from grader.notebooks import RunOptions, run_notebooks
    from reference.config import load

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="a submission folder")
    parser.add_argument("--store", action="store_true", help="save the outputs into the notebooks")
    parser.add_argument("--isolation", default="auto", choices=("auto", "bwrap", "rlimit"))
    parser.add_argument("--timings", type=Path, default=None, help="write the run's timings (JSON) here")
    parser.add_argument("--data-root", default=None, help="full scale: a real CIFAR-10 folder")
    parser.add_argument("--checkpoint", default=None, help="full scale: the instructor's pretrained_model.pt")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for all notebooks (default: the config's notebook_budget_s)")
    parser.add_argument("--cell-timeout", type=float, default=None,
                        help="seconds per cell (default: the config's notebook_cell_timeout_s)")
    parser.add_argument("--train-size", type=int, default=None,
                        help="fast mode: training images per epoch (default: the config's fast_train_size)")
    args = parser.parse_args(argv)
    import shutil

    options = RunOptions(isolation=args.isolation, data_root=args.data_root, checkpoint=args.checkpoint,
                         budget=args.budget, cell_timeout=args.cell_timeout, fast_train_size=args.train_size)
    session = run_notebooks(args.path, load(), options)
    try:
        for run in session.runs.values():
            ok = sum(1 for c in run.cells if c.status == "ok")
            print(f"{run.file}: {run.status} in {run.seconds:.1f} s ({ok} cells ok, "
                  f"{len(run.failed_cells())} failed)")
            for cell in run.failed_cells():
                print(f"  {run.describe_failure(cell)}")
        for note in session.notes:
            print(f"note: {note}")
        if args.timings:
            args.timings.parent.mkdir(parents=True, exist_ok=True)
            args.timings.write_text(json.dumps(timings(session), indent=1) + "\n")
        if args.store:
            for path in store_outputs(session):
                print(f"stored outputs in {path}")
    finally:
        if not options.cache_dir:
            shutil.rmtree(session.folder, ignore_errors=True)
    return 0


def timings(session) -> dict:
    """Wall times of a session's runs: per notebook and per cell (seconds)."""
    return {
        "mode": session.mode,
        "threads": session.info.get("threads"),
        "fast_train_size": session.info.get("fast_train_size"),
        "total_seconds": session.seconds,
        "notebooks": {run.file: {"status": run.status, "seconds": run.seconds,
                                 "cells": {f"cell {c.number}": c.seconds for c in run.cells if c.seconds}}
                      for run in session.runs.values()},
    }


if __name__ == "__main__":
    sys.exit(main())
