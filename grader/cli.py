"""``hw4grade``: the command line of the three users (DESIGN sections 1 and 7).

    hw4grade check [DIR]                          a student's self-check (public tests)
    hw4grade grade SUBMISSIONS --out OUT          grade a class (folder of folders/zips, or an export zip)
    hw4grade ci [DIR]                             CI on push: job summary, annotations, hw4-results/
    hw4grade assign [--check]                     regenerate (or verify) student_template/, build the editions
    hw4grade gradescope --out autograder.zip      the Gradescope autograder bundle
    hw4grade merge [SHEET] --out OUT              merge the filled manual.csv

Thin by design: each command parses its arguments and calls one typed function of
``grader.batch``, ``grader.grade``, ``grader.assign`` or ``grader.outputs``. Defaults live in
:data:`DEFAULTS`. Exit status: 0 success; 1 the work was done and found a problem (a failing
public test, a grader error, a sheet with errors, a stale template); 2 a usage error (argparse's
convention); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULTS", "Defaults", "build_parser", "main"]

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Defaults:
    """Every default of the command line, in one place."""

    check_dir: str = "."
    ci_dir: str = "."
    ci_out: str = "hw4-results"
    dist: str = "dist"
    workers: int = _default_workers()
    layout: str = "auto"
    isolation: str = "auto"


DEFAULTS = Defaults()


class UsageError(Exception):
    """Bad arguments the parser cannot see (a missing folder): exit 2 with the message."""


# ============================================================================ commands


def cmd_check(args: argparse.Namespace) -> int:
    from grader.answers import read_answers
    from grader.grade import GradeOptions, grade_submission
    from grader.outputs.selfcheck import all_passed, render
    from reference.config import load

    folder = _folder(args.dir, "DIR")
    cfg = load()
    result = grade_submission(
        folder,
        folder.name,
        GradeOptions(
            notebooks=args.notebooks,
            public_only=True,
            isolation=args.isolation,
            data_root=args.data_root,
            checkpoint=args.checkpoint,
        ),
        cfg,
    )
    print(render(result, str(args.dir), read_answers(folder), questions=len(cfg.tf_questions)), end="")
    return EXIT_OK if all_passed(result) else EXIT_PROBLEM


def cmd_grade(args: argparse.Namespace) -> int:
    from grader.batch import run_batch
    from grader.grade import GradeOptions
    from grader.outputs.escape import line
    from grader.outputs.gradebook import gradebook_table

    if not Path(args.submissions).exists():
        raise UsageError(f"SUBMISSIONS {args.submissions}: no such file or folder")
    options = GradeOptions(
        notebooks=not args.no_notebooks,
        isolation=args.isolation,
        data_root=args.data_root,
        checkpoint=args.checkpoint,
    )
    executor = None
    if args.executor == "dask":
        if not args.scheduler:
            raise UsageError("--executor dask needs --scheduler ADDRESS (e.g. tcp://10.0.0.5:8786)")
        try:
            from grader.dask_executor import DaskExecutor
        except ImportError as exc:
            raise UsageError(f"--executor dask needs dask[distributed] installed ({exc})") from None
        try:
            executor = DaskExecutor(args.scheduler)
        except OSError as exc:
            raise UsageError(f"--scheduler {args.scheduler}: cannot reach the Dask scheduler ({exc})"
                             ) from None
    elif args.scheduler:
        raise UsageError("--scheduler goes with --executor dask")
    with _sigterm_interrupts():
        report = run_batch(
            Path(args.submissions),
            Path(args.out),
            options,
            workers=args.workers,
            layout=args.layout,
            regrade=args.regrade,
            progress=not args.quiet,
            executor=executor,
        )
    for w in report.warnings:  # they quote file names from the submissions: one clean line each
        print(f"warning: {line(w)}", file=sys.stderr)
    print(gradebook_table(report.results))
    out = Path(args.out)
    print(
        f"\n{len(report.graded)} graded, {len(report.skipped)} unchanged since the last run, "
        f"in {report.seconds:.1f} s. Wrote {out / 'gradebook.csv'}, {out / 'manual.csv'}, "
        f"{out / 'summary.html'} and {out}/<student>/results.json, feedback.md.",
        file=sys.stderr,
    )
    if report.interrupted:
        left = len(report.students) - len(report.results)
        print(
            f"interrupted: {len(report.results)} of {len(report.students)} submissions graded and saved, "
            f"{left} left; run the same command again to grade the rest.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if report.grader_errors:
        print(
            f"{len(report.grader_errors)} submission(s) hit a grader error: "
            f"{', '.join(report.grader_errors)}; see {out / 'grader-errors'}/",
            file=sys.stderr,
        )
        return EXIT_PROBLEM
    return EXIT_OK


def cmd_ci(args: argparse.Namespace) -> int:
    from grader.answers import read_answers
    from grader.grade import GradeOptions, grade_submission
    from grader.outputs import ci
    from grader.outputs.atomic import write_text
    from grader.outputs.feedback import feedback_markdown
    from grader.outputs.results_json import results_text
    from grader.outputs.selfcheck import all_passed, render
    from reference.config import load

    folder = _folder(args.dir, "DIR")
    cfg = load()
    student = os.environ.get("GITHUB_REPOSITORY", "").rsplit("/", 1)[-1] or folder.resolve().name
    result = grade_submission(
        folder,
        student,
        GradeOptions(
            notebooks=args.notebooks,
            public_only=True,
            isolation=args.isolation,
            data_root=args.data_root,
            checkpoint=args.checkpoint,
        ),
        cfg,
    )
    out = Path(args.out)
    write_text(out / "results.json", results_text(result, cfg, public_only=True))
    write_text(out / "feedback.md", feedback_markdown(result, cfg))
    # The report quotes the student's messages: printed so the runner reads no command in it.
    report = render(result, str(args.dir), read_answers(folder), questions=len(cfg.tf_questions))
    print(ci.stdout_text(report, result), end="")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(ci.step_summary(result))
    return EXIT_OK if all_passed(result) else EXIT_PROBLEM


def cmd_assign(args: argparse.Namespace) -> int:
    from grader import assign
    from grader.edition import current
    from grader.edition.build import build_editions, check_editions, publish_help
    from grader.edition.contents import EditionError
    from reference.config import REPO_ROOT, load

    if current() != "source":
        raise UsageError("assign works in the project's source checkout (it writes student_template/ and "
                         "builds the editions from reference/ and tests/)")
    cfg = load()
    if args.check:
        problems = assign.check()
        if problems:
            problems.append("(the recorded values and the student edition are checked once these are up to date)")
        else:
            problems = check_editions(REPO_ROOT, cfg.path, isolation=args.isolation)
        for p in problems:
            print(p)
        if problems:
            print("run `hw4grade assign` to regenerate them", file=sys.stderr)
            return EXIT_PROBLEM
        print("student_template/, the solution sample and the recorded values are up to date with reference/; "
              "the student edition holds no reference line, hidden test name or T/F key")
        return EXIT_OK
    written = assign.write()
    for path in written:
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    try:
        built = build_editions(REPO_ROOT, cfg.path, Path(args.out), isolation=args.isolation)
    except EditionError as exc:
        print(f"hw4grade assign: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    if built.table_written:
        print(f"wrote {built.table.relative_to(REPO_ROOT) if built.table.is_relative_to(REPO_ROOT) else built.table}")
    elif not written:
        print("student_template/, the solution sample and the recorded values were already up to date")
    print(publish_help(built, cfg.grading.pip_spec))
    return EXIT_OK


def cmd_gradescope(args: argparse.Namespace) -> int:
    from grader.outputs.gradescope import build_bundle

    out = Path(args.out)
    if out.suffix.lower() != ".zip":
        raise UsageError(f"--out {out}: the bundle is a .zip file")
    names = build_bundle(out)
    print(
        f"wrote {out} ({len(names)} files). Upload it as the Gradescope autograder; it grades with "
        "the same tests and config as `hw4grade grade`."
    )
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    from grader.batch import BatchDir, write_outputs
    from grader.outputs.atomic import write_text
    from grader.outputs.manual import MergeError, dump_scores, load_scores, manual_maxima, merge_sheet
    from grader.results import SubmissionResult
    from reference.config import load

    bd = BatchDir(Path(args.out))
    if not bd.exists():
        raise UsageError(
            f"--out {args.out}: no graded batch there "
            f"(run `hw4grade grade SUBMISSIONS --out {args.out}` first)"
        )
    sheet = Path(args.sheet) if args.sheet else bd.out / "manual.csv"
    cfg = load()
    with bd.locked():
        records = {s: r for s in bd.students() if (r := bd.load_record(s)) is not None}
        graded = list(records)
        # items a submission handed over whole (grader.results.hand_over) take all their points
        maxima = {s: manual_maxima(SubmissionResult.from_dict(r["result"]), cfg) for s, r in records.items()}
        try:
            scores, report = merge_sheet(sheet, graded, cfg, load_scores(bd.manual_file), maxima)
        except MergeError as exc:
            for p in exc.problems:
                print(f"error: {p}", file=sys.stderr)
            print(
                f"nothing was merged: fix the {len(exc.problems)} problem(s) above and run merge again",
                file=sys.stderr,
            )
            return EXIT_PROBLEM
        write_text(bd.manual_file, dump_scores(scores))
        write_outputs(bd, cfg, merged_sheet=sheet)
    print(
        f"merged {report.merged} score(s) for {len(report.students)} student(s) from {sheet}; "
        f"{report.blank} row(s) still blank. Updated {bd.out / 'gradebook.csv'} and each results.json."
    )
    return EXIT_OK


# ============================================================================ parser


def _folder(value: str, what: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise UsageError(
            f"{what} {value}: not a folder" if path.exists() else f"{what} {value}: no such folder"
        )
    return path


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--isolation",
        choices=("auto", "bwrap", "rlimit"),
        default=DEFAULTS.isolation,
        help="sandbox level for student code (default: %(default)s = the strongest available)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="a real CIFAR-10 folder for full-scale notebook runs (default: the bundled fixture)",
    )
    p.add_argument(
        "--checkpoint", default=None, help="the instructor's pretrained_model.pt for full-scale notebook runs"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hw4grade",
        description="Autograder for HW4: pruning and fixed-point quantization.",
        epilog="Exit status: 0 ok, 1 problems found (failing tests, grader errors, bad sheet), "
        "2 usage error.",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="the assignment config (default: $HW4_CONFIG or reference/assignment.toml)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "check",
        help="self-check your work folder with the public tests",
        description="Run the public tests on your work folder and say what to fix first.",
    )
    p.add_argument(
        "dir",
        nargs="?",
        default=DEFAULTS.check_dir,
        metavar="DIR",
        help="your work folder (default: the current folder)",
    )
    p.add_argument("--notebooks", action="store_true", help="also execute your notebooks (slower)")
    _run_options(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "grade",
        help="grade a class of submissions",
        description="Grade a folder of submission folders or zips, or one LMS export zip. "
        "Resumable: a finished submission is graded again only when its files change.",
    )
    p.add_argument("submissions", metavar="SUBMISSIONS", help="a folder of submissions, or an export .zip")
    p.add_argument("--out", required=True, metavar="OUT", help="where results, gradebook and summary go")
    p.add_argument(
        "--workers",
        type=_positive,
        default=DEFAULTS.workers,
        help="submissions graded at once (default: %(default)s, the CPUs available)",
    )
    p.add_argument(
        "--no-notebooks", action="store_true", help="grade functions only; do not execute notebooks"
    )
    p.add_argument("--regrade", action="store_true", help="grade every submission again, changed or not")
    p.add_argument(
        "--layout",
        choices=("auto", "flat", "grouped"),
        default=DEFAULTS.layout,
        help="flat: every entry is a student; grouped: entries are groups of students "
        "(<group>-<name>); auto: decide from the folder (default)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local: forked workers on this machine (default); dask: tasks on a Dask "
                   "distributed cluster (--scheduler), paths on a shared file system")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="the Dask scheduler, with --executor dask")
    _run_options(p)
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser(
        "ci",
        help="grade on push in GitHub Actions (public tests)",
        description="Public tests on DIR; writes the job summary, ::error annotations and "
        "OUT/results.json + feedback.md; exit 1 when a public test fails.",
    )
    p.add_argument(
        "dir", nargs="?", default=DEFAULTS.ci_dir, metavar="DIR", help="the repository (default: .)"
    )
    p.add_argument("--out", default=DEFAULTS.ci_out, help="artifact folder (default: %(default)s)")
    p.add_argument("--notebooks", action="store_true", help="also execute the notebooks")
    _run_options(p)
    p.set_defaults(func=cmd_ci)

    p = sub.add_parser(
        "assign",
        help="regenerate student_template/ from reference/, build both editions",
        description="Render student_template/ and the solution sample from reference/, record the "
        "reference's values for the public tests, and build the full and the student edition "
        "(wheels in --out) with the command to publish the student's.",
    )
    p.add_argument("--check", action="store_true",
                   help="only verify; exit 1 when a file or the recorded values are out of date, or when "
                   "the student edition would hold a reference line, a hidden test's name or the T/F key")
    p.add_argument("--out", default=DEFAULTS.dist, metavar="DIR",
                   help="where the two editions' wheels go (default: %(default)s)")
    p.add_argument("--isolation", choices=("auto", "bwrap", "rlimit"), default=DEFAULTS.isolation,
                   help="sandbox level of the recording run (default: %(default)s)")
    p.set_defaults(func=cmd_assign)

    p = sub.add_parser("gradescope", help="build the Gradescope autograder bundle")
    p.add_argument("--out", required=True, metavar="FILE.zip", help="the bundle to write")
    p.set_defaults(func=cmd_gradescope)

    p = sub.add_parser(
        "merge",
        help="merge the filled manual-grading sheet",
        description="Merge manual scores into gradebook.csv and every results.json of OUT.",
    )
    p.add_argument(
        "sheet", nargs="?", default=None, metavar="SHEET", help="the filled sheet (default: OUT/manual.csv)"
    )
    p.add_argument("--out", required=True, metavar="OUT", help="the graded batch folder")
    p.set_defaults(func=cmd_merge)
    return parser


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """CI cancellation and ``kill`` send SIGTERM: treat it as Ctrl-C while a batch runs, so the
    batch stops its children and saves what it has."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from grader.batch import BatchError
    from grader.edition import INSTRUCTOR_COMMANDS, current
    from reference.config import ConfigError, load

    if args.command in INSTRUCTOR_COMMANDS and current() == "student":
        parser.exit(EXIT_USAGE, f"hw4grade {args.command}: this is the student edition (hw4grade-student): it has "
                    "the public tests only, for `hw4grade check` and `hw4grade ci`; the course's "
                    "instructors grade with the full edition\n")
    if args.config:
        os.environ["HW4_CONFIG"] = str(Path(args.config).resolve())
    try:
        load()
    except ConfigError as exc:
        parser.exit(EXIT_USAGE, f"hw4grade: error: {exc}\n")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (UsageError, BatchError) as exc:
        parser.exit(EXIT_USAGE, f"hw4grade {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK  # pragma: no cover - every command returns


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
