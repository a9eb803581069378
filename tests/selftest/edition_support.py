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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
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


def run(python: Path, *args: str, cwd: Path, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    """``python ARGS`` as a user of its environment would run it (:func:`clean_env`, HOME = cwd).
    An installed edition's commands share one reference cache (``$HW4_CACHE_DIR``), as one user's
    runs share ``~/.cache/hw4grade``: the edition's first grading computes it, the others read it."""
    prefix = python.parent.parent
    if prefix.resolve() != Path(sys.prefix).resolve():
        env.setdefault("HW4_CACHE_DIR", str(prefix.with_name(f"{prefix.name}-cache")))
    return subprocess.run([str(python), *args], cwd=cwd, env=clean_env(prefix, cwd, **env), capture_output=True,
                          text=True, timeout=timeout, check=False)


def check_many(python: Path, samples: dict[str, Path], out: Path, workers: int = 2,
               isolation: str = "auto", only: dict[str, str] | None = None) -> dict[str, dict]:
    """The installed edition's self-check of every sample: ``{id: SubmissionResult as a dict}``;
    ``only[id]``, where given, is a ``-k`` expression choosing the tests."""
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "samples.json"
    spec.write_text(json.dumps({k: [str(v), (only or {}).get(k)] for k, v in samples.items()}))
    script = out / "check_many.py"
    script.write_text(CHECK_MANY)
    proc = run(python, str(script), str(spec), str(out), str(workers), isolation, cwd=out, timeout=3600)
    missing = [k for k in samples if not (out / f"{k}.json").is_file()]
    if missing:
        raise AssertionError(f"no result for {missing[:5]} ({len(missing)} in all):\n{proc.stderr[-4000:]}")
    return {k: json.loads((out / f"{k}.json").read_text()) for k in samples}


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
