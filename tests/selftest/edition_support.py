"""Install an edition the way a user does and run it away from the source tree.

:func:`fresh_env` makes a new virtual environment outside the checkout whose third-party packages
(torch, numpy, hypothesis, ...) are hard links to this suite's own environment -- the pinned
requirements, without copying 5 GB or reaching a package index -- and which holds nothing of
hw4grade (no editable install, no ``grader``/``reference``). :func:`install` then pip-installs a
built wheel into it, non-editable, with no index: pip itself checks that the wheel's dependencies
are met. Commands run with a clean environment and a working folder outside the checkout, so the
installed edition cannot import or read the source tree.

:data:`CHECK_MANY` is the self-check of many folders in one process: the same call ``hw4grade
check`` makes (``grade_submission(..., public_only=True)``), one forked child per folder from a
parent that imported torch once, two at a time (each its own sandbox slot), each result written as
JSON; a folder may name a pytest ``-k`` expression (the tests of one lab, say).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from background import start_background, stop_background

ROOT = Path(__file__).resolve().parent.parent.parent
SUBMISSIONS = ROOT / "fixtures" / "submissions"
CORRECT = SUBMISSIONS / "correct" / "reference"
BUGGY = sorted(p.parent for p in (SUBMISSIONS / "buggy").glob("*/expected.json"))
#: seconds each expensive step of the edition tests took, printed at the end of the session
#: (the suite's cost of issue 12)
TIMES: dict[str, float] = {}
#: entries of our site-packages that are hw4grade itself, never carried into a fresh environment
_OURS = ("hw4grade", "__editable__", "grader", "reference", "__editable___hw4grade")

CHECK_MANY = r'''
import json, os, sys, traceback
from pathlib import Path

samples = json.loads(Path(sys.argv[1]).read_text())
out, workers, isolation = Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
import torch  # imported once, before the children fork
torch.set_num_threads(1)
from grader.grade import GradeOptions, grade_submission
from grader.plugin import sandbox_args
from grader.sandbox.shared import SlotSandboxes
from reference.config import load

# as a batch does: one sandbox per slot, borrowed by each check in turn (grader.sandbox.shared)
cfg = load()
slots = SlotSandboxes(lambda slot: sandbox_args(cfg, isolation, slot), out / "slots")
pending, running = list(samples.items()), {}
while pending or running:
    while pending and len(running) < workers:
        sid, (path, only) = pending.pop(0)
        slot = min(set(range(workers)) - set(running.values()))
        slots.before_fork(slot)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                options = GradeOptions(notebooks=False, public_only=True, slot=slot, isolation=isolation,
                                       pytest_args=("-k", only) if only else ())
                result = grade_submission(Path(path), sid, options)
                (out / f"{sid}.json").write_text(result.to_json())
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        slots.after_fork()
        running[pid] = slot
    pid, status = os.wait()
    slots.job_done(running.pop(pid), clean=status == 0)
slots.close()
'''


def _site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def work_dir(prefix: str) -> Path:
    """A fresh folder outside the checkout that a sandbox's unprivileged uid may read."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def fresh_env(dest: Path) -> Path:
    """A new venv at ``dest`` with this environment's third-party packages (hard links), no
    hw4grade; returns its ``python``."""
    base_python = os.path.realpath(sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(dest)], check=True, capture_output=True)
    src = Path(sysconfig.get_paths()["purelib"])
    target = _site_packages(dest)
    for entry in sorted(src.iterdir()):
        if entry.name.startswith(_OURS) or entry.name == "__pycache__":
            continue
        _link(entry, target / entry.name)
    return dest / "bin" / "python"


def _link(src: Path, dst: Path) -> None:
    if src.is_symlink() or src.is_file():
        os.link(src, dst, follow_symlinks=False)
        return
    if shutil.which("cp"):
        subprocess.run(["cp", "-al", str(src), str(dst)], check=True)
    else:  # pragma: no cover - coreutils is everywhere the suite runs
        shutil.copytree(src, dst, copy_function=os.link, symlinks=True)


def clean_env(prefix: Path, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a command run as a user of ``prefix`` would: its bin first, no
    PYTHONPATH, no package index, no GitHub variables of a CI this suite may run in."""
    env = {"PATH": f"{prefix / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "MPLBACKEND": "Agg"}
    env.update(extra)
    return env


def install(python: Path, wheel: Path, home: Path) -> subprocess.CompletedProcess:
    """``pip install WHEEL`` (non-editable, no index) into ``python``'s environment."""
    prefix = python.parent.parent
    return subprocess.run([str(python), "-m", "pip", "install", "--no-index", str(wheel)], cwd=home,
                          env=clean_env(prefix, home), capture_output=True, text=True, timeout=600, check=False)


def _user_env(python: Path, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    """:func:`clean_env` for a command of ``python``'s environment run in ``cwd``. An installed
    edition's commands share one reference cache (``$HW4_CACHE_DIR``), as one user's runs share
    ``~/.cache/hw4grade``: the edition's first grading computes it, the others read it."""
    prefix = python.parent.parent
    if prefix.resolve() != Path(sys.prefix).resolve():
        env.setdefault("HW4_CACHE_DIR", str(prefix.with_name(f"{prefix.name}-cache")))
    return clean_env(prefix, cwd, **env)


def run(python: Path, *args: str, cwd: Path, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    """``python ARGS`` as a user of its environment would run it (:func:`_user_env`, HOME = cwd)."""
    return subprocess.run([str(python), *args], cwd=cwd, env=_user_env(python, cwd, env), capture_output=True,
                          text=True, timeout=timeout, check=False)


@dataclass
class CheckMany:
    """A started :data:`CHECK_MANY` run (:func:`start_check_many`); :meth:`results` waits for it."""

    proc: subprocess.Popen
    samples: dict[str, Path]
    out: Path
    log: Path
    #: one of the session's background jobs (``background.start_background``)
    background: bool = False

    def results(self, timeout: float = 3600) -> dict[str, dict]:
        """``{id: SubmissionResult as a dict}``; an AssertionError naming the samples without one."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
        missing = [k for k in self.samples if not (self.out / f"{k}.json").is_file()]
        if missing:
            raise AssertionError(f"no result for {missing[:5]} ({len(missing)} in all):\n"
                                 f"{self.log.read_text(errors='replace')[-4000:]}")
        return {k: json.loads((self.out / f"{k}.json").read_text()) for k in self.samples}

    def stop(self) -> None:
        """Kill it if it still runs; a background job with its forked checks and their sandboxes."""
        if self.background:
            stop_background(self.proc)
        elif self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_check_many(python: Path, samples: dict[str, Path], out: Path, workers: int = 2,
                     isolation: str = "auto", only: dict[str, str] | None = None,
                     background: bool = False) -> CheckMany:
    """Start the installed edition's self-check of every sample; ``only[id]``, where given, is a
    ``-k`` expression choosing the tests. Its output goes to ``out/log.txt``. ``background``: as
    one of the session's background jobs (``background.start_background``)."""
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "samples.json"
    spec.write_text(json.dumps({k: [str(v), (only or {}).get(k)] for k, v in samples.items()}))
    script = out / "check_many.py"
    script.write_text(CHECK_MANY)
    log = out / "log.txt"
    with log.open("w") as sink:
        popen = start_background if background else subprocess.Popen
        proc = popen([str(python), str(script), str(spec), str(out), str(workers), isolation], cwd=out,
                     env=_user_env(python, out, {}), stdout=sink, stderr=subprocess.STDOUT)
    return CheckMany(proc, samples, out, log, background)


def check_many(python: Path, samples: dict[str, Path], out: Path, workers: int = 2,
               isolation: str = "auto", only: dict[str, str] | None = None) -> dict[str, dict]:
    """:func:`start_check_many`, waited for: ``{id: SubmissionResult as a dict}``."""
    return start_check_many(python, samples, out, workers, isolation, only).results()


def installed_files(python: Path, dist: str) -> dict[str, bytes]:
    """Every file pip installed for ``dist`` (its RECORD), path relative to site-packages -> bytes."""
    site = _site_packages(python.parent.parent)
    info = next(site.glob(f"{dist}-*.dist-info"))
    out = {}
    for line in (info / "RECORD").read_text().splitlines():
        rel = line.split(",", 1)[0]
        path = (site / rel).resolve()
        if path.is_file():
            out[rel] = path.read_bytes()
    return out


def public_verdicts(result: dict) -> dict[str, tuple[str, str]]:
    """``{test name: (status, message)}`` of the public tests a result ran."""
    out = {}
    for item in result["items"].values():
        for case in item["cases"]:
            if case["visibility"] == "public" and case["status"] != "not run":
                out[case["name"]] = (case["status"], case["message"])
    return out


def timed(name: str, started: float) -> None:
    """Add the seconds since ``started`` (``time.monotonic()``) to ``TIMES[name]``."""
    TIMES[name] = TIMES.get(name, 0.0) + time.monotonic() - started


def buggy_lab(sample: Path) -> str | None:
    """The lab a buggy sample's one mistake is in (``lab2_q_as_fraction``: lab2), or None when it
    may touch several (notebook and T/F samples). The sample's files for the other labs are the
    solution's, so their public tests see what the correct sample's see: checking them there says
    the same, and costs a third of the time (measured)."""
    head = sample.name.split("_", 1)[0]
    return head if head in ("lab1", "lab2", "lab3") else None


def start_student_checks(python: Path, out: Path) -> CheckMany:
    """Start the installed student edition's self-check of the correct sample (every public test)
    and of every buggy one (the public tests of the lab its mistake is in; all of them for the
    others), as a background job of the session (``background.start_background``)."""
    samples = {"correct": CORRECT, **{f"buggy-{p.name}": p for p in BUGGY}}
    only = {f"buggy-{p.name}": buggy_lab(p) for p in BUGGY if buggy_lab(p)}
    return start_check_many(python, samples, out, only=only, background=True)


def installed(home: Path, wheel: Path, name: str) -> Path:
    """A :func:`fresh_env` at ``home/<name>-env`` with ``wheel`` pip-installed; its ``python``."""
    started = time.monotonic()
    python = fresh_env(home / f"{name}-env")
    proc = install(python, wheel, home)
    assert proc.returncode == 0, f"pip install {wheel.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    timed(f"fresh env + install {name}", started)
    return python
