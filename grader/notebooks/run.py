"""Run a submission's notebooks in the sandbox and bring back what they produced (trusted side).

``run_notebooks(root, cfg, options)``:

1. **select** the Lab 2/3 notebook (the ``.ipynb`` that defines the Lab 2 functions, else the one
   that loads ``pretrained_model.pt``) and the Lab 1 notebook or script (where the Lab 1 runners
   are defined, else a file named like ``lab1``);
2. **stage** a host folder per notebook: ``work/`` (the notebook's folder: the submission's files,
   then the grader's ``resnet20.py``/``train_util.py`` over any student copies, the checkpoint as
   ``pretrained_model.pt``, and the given ``FP_layers.py`` when the submission has none) and
   ``meta/`` (the runner's record, the event log, masks). Both are owned by the sandbox's uid;
   their parents are root's, so the sandbox cannot swap them for links;
3. **run** ``runner.py`` in one sandbox (``grader.sandbox.launcher.spawn``) with the staged folder
   bound read-write; the grader watches the folder's size and the wall clock;
4. **harvest** only regular files of known names, opened without following links and under size
   limits, into a clean folder: ``run.json``, ``executed.ipynb``, ``events.jsonl``, the masks,
   the checkpoints (``*.pt`` named in the config) and the list of figure files. Nothing is
   unpickled here; checkpoints are read later with ``torch.load(weights_only=True)``.

**Cache** (``HW4_NOTEBOOK_CACHE=DIR`` or ``RunOptions.cache_dir``): a harvest is stored under a
key that hashes everything the run depends on -- the submission's staged files, the given files,
the harness and runner code, the data and checkpoint, the mode and limits -- so grading the same
submission again (a resumed batch, a test suite that grades one sample twice) reuses its run.
A changed file anywhere gives a new key. Entries are written atomically (rename).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from grader.discover import Discovery, discover, is_lab1_file
from grader.errors import GraderError
from grader.threads import grading_threads
from reference import data as reference_data
from reference.config import REPO_ROOT, Config

__all__ = ["CACHE_ENV", "HARVEST_VERSION", "RunOptions", "cache_key", "execute_notebooks", "select_notebooks"]

HERE = Path(__file__).resolve().parent
CACHE_ENV = "HW4_NOTEBOOK_CACHE"
GPU_ENV = "HW4_NOTEBOOK_GPU"
GPU_MEMORY_MB = 1 << 16  # CUDA reserves far more address space than it uses: RLIMIT_AS must allow it
HARVEST_VERSION = "1"
TEMPLATE = REPO_ROOT / "student_template"
GIVEN = {"resnet20.py": TEMPLATE / "resnet20.py", "train_util.py": TEMPLATE / "train_util.py"}
GIVEN_FP_LAYERS = TEMPLATE / "FP_layers.py"  # the wrappers, for a notebook that defines STE inline
#: Appended to the template's FP_layers.py when the submission has none: the template's STE is the
#: student's exercise (its backward raises), so until the notebook's own STE is defined and linked
#: (the harness does that) full-precision training must still work -- a notebook may define STE
#: in its Lab 3 part, after the Lab 2 training cells.
STANDIN_STE = '''

class STE(torch.autograd.Function):
    """The grader's stand-in until your notebook defines STE: full precision only."""

    @staticmethod
    def forward(ctx, w, bit, symmetric=False):
        if bit is None:
            return w
        raise NotImplementedError("STE is not defined yet: define class STE in your notebook "
                                  "before building a quantized model")

    @staticmethod
    def backward(ctx, g):
        return g, None, None
'''
FIXTURE_MODULE = Path(reference_data.__file__).resolve()
CPU_MODULE = HERE.parent / "sandbox" / "cpu_only.py"  # the CUDA -> CPU mapping (the worker's too)
MAX_FILE_COPY = 1 << 20  # other files of a submission are staged only if smaller (as for the worker)
MAX_CHECKPOINT = 64 << 20
MAX_EVENTS = 16 << 20
MAX_NOTEBOOK = 32 << 20
MAX_MASK = 4 << 20
MAX_MASKS = 64
MAX_RUN_FOLDER = 1 << 30  # the whole run folder (checked while it runs)
MAX_RUN_FILES = 20_000
START_MARGIN_S = 90.0  # kernel start-up and the runner's own import time, per notebook


@dataclass(frozen=True)
class RunOptions:
    """How to run: fast grading mode (default) or full scale (``data_root`` and ``checkpoint``)."""

    data_root: str | None = None  # a real CIFAR-10 folder: full scale
    checkpoint: str | None = None  # the instructor's pretrained_model.pt
    isolation: str = "auto"
    slot: int = 0
    threads: int = field(default_factory=grading_threads)
    cache_dir: str | None = field(default_factory=lambda: os.environ.get(CACHE_ENV) or None)
    cell_timeout: float | None = None  # default: config [grading] notebook_cell_timeout_s
    budget: float | None = None  # all notebooks together; default: config [grading] notebook_budget_s
    fast_train_size: int | None = None  # default: config [data] fast_train_size
    #: full scale only: let the kernel use the GPU (``HW4_NOTEBOOK_GPU=1``). Needs the ``rlimit``
    #: isolation level: bubblewrap's private /dev has no GPU device nodes. Untested on GPU hardware.
    gpu: bool = field(default_factory=lambda: os.environ.get(GPU_ENV) == "1")

    @property
    def mode(self) -> str:
        return "full" if self.data_root else "fast"


def select_notebooks(disc: Discovery) -> dict[str, str]:
    """``{"hw4": file, "lab1": file}`` (relative paths) for the notebooks to run; a kind is
    missing when the submission has no such file. Both kinds may name the same notebook (Lab 1
    written in the Lab 2/3 notebook): it then runs once."""
    files = list(disc.files)
    chosen: dict[str, str] = {}
    lab2 = [disc.found[n].file for n in ("prune_by_percentage", "finetune_after_prune",
                                         "global_prune_by_percentage") if n in disc.found]
    hw4 = [f for f in lab2 if f.endswith(".ipynb")]
    if not hw4:
        hw4 = [f for f in files if f.endswith(".ipynb") and not _lab1_name(f)
               and b"pretrained_model.pt" in (disc.root / f).read_bytes()[:MAX_NOTEBOOK]]
    if not hw4:
        hw4 = [f for f in files if f.endswith(".ipynb") and not _lab1_name(f)]
    if hw4:
        chosen["hw4"] = hw4[0]
    lab1 = [disc.found[n].file for n in ("run_gd", "run_projected_gd", "run_l1_gd", "run_proximal_gd",
                                         "run_trimmed_l1", "loss") if n in disc.found]
    if not lab1:
        lab1 = [f for f in files if _lab1_name(f)]
    if lab1:
        # A notebook first: it holds the plotting cells; a lab1.py module may only define functions.
        chosen["lab1"] = sorted(lab1, key=lambda f: (not f.endswith(".ipynb"), f))[0]
    return chosen


def _distinct(selected: dict[str, str]) -> dict[str, str]:
    """The kinds to run: one per distinct file (the first kind that names it)."""
    out: dict[str, str] = {}
    for kind, file in selected.items():
        if file not in out.values():
            out[kind] = file
    return out


def _lab1_name(file: str) -> bool:
    return is_lab1_file(file)


# ----------------------------------------------------------------------------- cache key


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _staged_files(root: Path) -> list[tuple[str, Path]]:
    """The submission files a run stages: sources always, other files under MAX_FILE_COPY."""
    from grader.discover import IGNORED_DIRS

    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(p in IGNORED_DIRS or p.startswith(".") for p in rel.parts) or path.is_symlink():
            continue
        if not path.is_file() or path.name in GIVEN or len(rel.parts) > 3:
            continue
        if path.suffix not in (".py", ".ipynb") and path.stat().st_size > MAX_FILE_COPY:
            continue
        out.append((str(rel), path))
    return out


def cache_key(root: Path, selected: dict[str, str], cfg: Config, options: RunOptions) -> str:
    """A digest of everything the run's outcome depends on (see the module doc)."""
    h = hashlib.sha256(f"hw4grade-notebooks-{HARVEST_VERSION}".encode())
    parts: dict = {
        "standin": STANDIN_STE,
        "selected": selected,
        "options": {k: v for k, v in asdict(options).items() if k not in ("cache_dir", "slot", "isolation")},
        "limits": [_cell_timeout(cfg, options), _budget(cfg, options), _train_size(cfg, options),
                   cfg.grading.notebook_memory_mb, cfg.data.fast_batches_per_epoch, cfg.data.fast_batch_size,
                   _test_size(cfg, options)],
        "code": [_file_digest(p) for p in (HERE / "harness.py", HERE / "runner.py", HERE / "portability.py",
                                           FIXTURE_MODULE, CPU_MODULE, GIVEN_FP_LAYERS, *GIVEN.values())],
        "python": sys.version,
    }
    if options.data_root:
        parts["data"] = os.path.realpath(options.data_root)
    else:
        parts["data"] = _file_digest(cfg.data.fixture)
    parts["checkpoint"] = _file_digest(Path(options.checkpoint or cfg.data.checkpoint))
    h.update(json.dumps(parts, sort_keys=True).encode())
    for rel, path in _staged_files(root):
        h.update(rel.encode() + b"\0" + _file_digest(path).encode() + b"\0")
    return h.hexdigest()


def _cell_timeout(cfg: Config, options: RunOptions) -> float:
    return float(options.cell_timeout or cfg.grading.notebook_cell_timeout_s)


def _budget(cfg: Config, options: RunOptions) -> float:
    return float(options.budget or cfg.grading.notebook_budget_s)


def _train_size(cfg: Config, options: RunOptions) -> int:
    return int(cfg.data.fast_train_size if options.fast_train_size is None else options.fast_train_size)


def _test_size(cfg: Config, options: RunOptions) -> int:
    """The fast mode's subset of the fixture's test split (0: all of it, and outside fast mode)."""
    return int(cfg.data.fast_test_size) if options.mode == "fast" else 0


# ----------------------------------------------------------------------------- run


def execute_notebooks(root: Path, cfg: Config, options: RunOptions,
                      discovery: Discovery | None = None) -> Path:
    """Run the submission's notebooks (or take the run from the cache); return the harvest folder.

    The harvest folder holds ``session.json`` and one folder per notebook kind run (see the module
    doc). Without a cache it is a fresh temporary folder the caller removes.

    Raises:
        GraderError: the sandbox could not be started, or the grader's own files are missing.
    """
    root = Path(root).resolve()
    disc = discovery or discover(root)
    selected = select_notebooks(disc)
    key = cache_key(root, selected, cfg, options)
    if options.cache_dir:
        entry = Path(options.cache_dir) / key
        if (entry / "session.json").is_file():
            return entry
    harvest = Path(tempfile.mkdtemp(prefix="hw4-notebooks-"))
    try:
        _run_and_harvest(root, disc, selected, cfg, options=options, harvest=harvest, key=key)
    except BaseException:
        shutil.rmtree(harvest, ignore_errors=True)
        raise
    if options.cache_dir:
        entry = Path(options.cache_dir) / key
        entry.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(harvest, entry)  # atomic: a concurrent grader sees all of it or none
        except OSError:  # another process stored the same run first
            shutil.rmtree(harvest, ignore_errors=True)
        return entry
    return harvest


def _run_and_harvest(root: Path, disc: Discovery, selected: dict[str, str], cfg: Config, *,
                     options: RunOptions, harvest: Path, key: str) -> None:
    from grader.sandbox.launcher import Limits, detect_isolation, lease_uid, spawn, stage_dir

    started = time.monotonic()
    session = {"key": key, "selected": selected, "mode": options.mode, "threads": options.threads,
               "fast_train_size": _train_size(cfg, options) if options.mode == "fast" else 0,
               "fast_test_size": _test_size(cfg, options),
               "data_root": options.data_root, "checkpoint": str(options.checkpoint or cfg.data.checkpoint),
               "isolation": "", "stop": None, "exit": None, "seconds": 0.0, "output": ""}
    if not selected:
        (harvest / "session.json").write_text(json.dumps(session))
        return
    isolation = detect_isolation(options.isolation)
    session["isolation"] = isolation.describe()
    lease = lease_uid(options.slot)
    stage = stage_dir("hw4-notebook-run-")
    proc = None
    try:
        bwrap = isolation.level == "bwrap"
        inside = {"code": "/sandbox/nbcode", "run": "/sandbox/run", "scratch": "/scratch",
                  "fixture": "/sandbox/data/fixture.npz", "cifar": "/sandbox/data/cifar10"}
        if not bwrap:
            inside = {"code": str(stage / "code"), "run": str(stage / "run"),
                      "scratch": str(stage / "scratch"), "fixture": str(cfg.data.fixture),
                      "cifar": _cifar_root(options.data_root) or ""}
        uid = lease.uid if lease else None
        job = _stage(stage, root, disc, selected, cfg, options=options, inside=inside, uid=uid)
        env = {
            "PATH": "/usr/bin:/bin", "HOME": inside["scratch"], "TMPDIR": inside["scratch"],
            "LANG": "C.UTF-8", "MPLCONFIGDIR": f"{inside['scratch']}/.mpl", "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "JUPYTER_PLATFORM_DIRS": "1",
            "OMP_NUM_THREADS": str(options.threads), "MKL_NUM_THREADS": str(options.threads),
            # Idle OpenMP threads sleep instead of spinning: on a busy machine (a batch, other jobs)
            # spinning threads made a 2-thread kernel 4x slower than a 1-thread one (measured).
            "OMP_WAIT_POLICY": "PASSIVE",
        }
        gpu = options.mode == "full" and options.gpu
        if not gpu:
            env["CUDA_VISIBLE_DEVICES"] = ""
        binds = [(str(stage / "code"), inside["code"])]
        if options.mode == "fast":
            binds.append((str(cfg.data.fixture), inside["fixture"]))
        else:
            binds.append((str(_cifar_root(options.data_root)), inside["cifar"]))
        rw_binds = [(str(stage / "run"), inside["run"])]
        if not bwrap:
            rw_binds.append((str(stage / "scratch"), inside["scratch"]))
        if gpu and not bwrap:  # Landlock lets the process open only the paths it is given
            rw_binds += [(str(p), str(p)) for p in sorted(Path("/dev").glob("nvidia*"))]
        g = cfg.grading
        total = _budget(cfg, options)
        limits = Limits(memory_mb=max(g.notebook_memory_mb, GPU_MEMORY_MB if gpu else 0),
                        cpu_seconds=int(total * options.threads) + 600,
                        processes=max(g.max_processes, 128), file_mb=g.max_file_mb, open_files=1024,
                        output_bytes=g.max_output_bytes, scratch_mb=512)
        argv = [sys.executable, "-I", f"{inside['code']}/runner.py", f"{inside['code']}/job.json"]
        try:
            proc = spawn(argv, isolation=isolation, limits=limits, binds=binds, rw_binds=rw_binds, env=env,
                         cwd=inside["scratch"], slot=options.slot,
                         tmpfs_scratch=inside["scratch"] if bwrap else None, lease=lease)
        except (OSError, ValueError, RuntimeError) as exc:
            raise GraderError(f"the notebook sandbox could not be started ({isolation.level}): "
                              f"{exc}") from exc
        # bubblewrap's scratch is a size-limited tmpfs; at the rlimit level it is a plain folder
        watched = [stage / "run"] + ([] if bwrap else [stage / "scratch"])
        session["stop"] = _wait(proc, watched, total + START_MARGIN_S * len(_distinct(selected)))
        session["exit"] = proc.exit_description()
        session["output"] = proc.output_text()[-20000:]
        del job
        for kind, rel in _distinct(selected).items():
            _harvest_one(stage / "run" / kind, harvest / kind, cfg, _home(rel))
    finally:
        if proc is not None:
            proc.kill()
        elif lease is not None:
            lease.release()
        shutil.rmtree(stage, ignore_errors=True)
    session["seconds"] = round(time.monotonic() - started, 2)
    (harvest / "session.json").write_text(json.dumps(session))


def _cifar_root(data_root: str | None) -> str | None:
    """The folder that holds ``cifar-10-batches-py`` (``--hw4-data-root`` may name either)."""
    if not data_root:
        return None
    path = Path(data_root).resolve()
    if path.name == "cifar-10-batches-py":
        return str(path.parent)
    if not (path / "cifar-10-batches-py").is_dir():
        raise GraderError(f"--hw4-data-root {data_root}: no cifar-10-batches-py folder there")
    return str(path)


def _stage(stage: Path, root: Path, disc: Discovery, selected: dict[str, str], cfg: Config, *,
           options: RunOptions, inside: dict[str, str], uid: int | None) -> dict:
    code = stage / "code"
    code.mkdir()
    for src in (HERE / "runner.py", HERE / "harness.py", HERE / "portability.py"):
        shutil.copyfile(src, code / src.name)
    shutil.copyfile(FIXTURE_MODULE, code / "fixture_data.py")
    shutil.copyfile(CPU_MODULE, code / "cpu_only.py")
    (stage / "scratch").mkdir()
    (stage / "scratch").chmod(0o1777)
    run = stage / "run"
    run.mkdir()
    checkpoint = Path(options.checkpoint or cfg.data.checkpoint)
    notebooks = []
    # Lab 1 first: it takes seconds, so a Lab 2/3 notebook that uses up the budget cannot cost it.
    for kind, rel in sorted(_distinct(selected).items(), key=lambda kv: kv[0] != "lab1"):
        base = run / kind
        work, meta = base / "work", base / "meta"
        work.mkdir(parents=True)
        meta.mkdir()
        for name, src in _staged_files(root):
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        # The notebook runs in its own folder (as Jupyter runs it), which may be a sub-folder:
        # the given files, the checkpoint and (when it has none) the FP layers go there.
        home_rel = _home(rel)
        home = work / home_rel
        for name, src in GIVEN.items():
            shutil.copyfile(src, home / name)
        has_fp_layers = (Path(home_rel) / "FP_layers.py").as_posix().removeprefix("./") in disc.files
        if not has_fp_layers:
            (home / "FP_layers.py").write_text(GIVEN_FP_LAYERS.read_text() + STANDIN_STE)
        if kind == "hw4":
            shutil.copyfile(checkpoint, home / "pretrained_model.pt")
        for folder in (work, meta):
            _hand_over(folder, uid)
        sandbox_base = f"{inside['run']}/{kind}"
        options_in = {
            "seed": 0, "threads": options.threads, "cpu_only": not (options.mode == "full" and options.gpu),
            # fast mode: no worker processes; full scale keeps the student's (CIFAR-10 decoding is slow)
            "link_ste": not has_fp_layers, "no_loader_workers": options.mode == "fast",
            "fixture": inside["fixture"] if options.mode == "fast" else None,
            "fixture_module": f"{inside['code']}/fixture_data.py",
            "cpu_module": f"{inside['code']}/cpu_only.py",
            "portability_module": f"{inside['code']}/portability.py",
            "collected": sorted(_collected(cfg)),
            "fast_train_size": _train_size(cfg, options),
            "fast_test_size": _test_size(cfg, options),
            "fast_batches_per_epoch": cfg.data.fast_batches_per_epoch if options.mode == "fast" else 0,
            "fast_batch_size": cfg.data.fast_batch_size if options.mode == "fast" else 0,
            "data_root": inside["cifar"] if options.mode == "full" else None,
        }
        notebooks.append({"kind": kind, "file": rel, "work": f"{sandbox_base}/work",
                          "home": f"{sandbox_base}/work/{home_rel}".removesuffix("/."),
                          "meta": f"{sandbox_base}/meta", "options": options_in})
    for folder in (run, *[run / k for k in _distinct(selected)]):
        folder.chmod(0o755)  # root's: the sandbox can write inside work/ and meta/ only
    job = {"notebooks": notebooks, "scratch": inside["scratch"], "harness": f"{inside['code']}/harness.py",
           "budget": _budget(cfg, options), "cell_timeout": _cell_timeout(cfg, options)}
    (code / "job.json").write_text(json.dumps(job))
    for f in code.iterdir():
        f.chmod(0o644)
    code.chmod(0o755)
    return job


def _home(rel: str) -> str:
    """The folder a notebook runs in, relative to the submission ("." for the top)."""
    return Path(rel).parent.as_posix()


def _collected(cfg: Config) -> set[str]:
    """The files a run leaves that the grader collects (the checkpoints)."""
    return {*cfg.lab2.checkpoints.values(), cfg.lab3.checkpoint}


def _hand_over(folder: Path, uid: int | None) -> None:
    """Give a staged folder to the sandbox's uid (or make it writable when we have none)."""
    for path in [folder, *folder.rglob("*")]:
        if uid is not None:
            os.chown(path, uid, uid, follow_symlinks=False)
        path.chmod(0o755 if path.is_dir() else 0o644)
    if uid is None and os.geteuid() == 0:
        folder.chmod(0o777)


def _wait(proc, folders: list[Path], timeout: float) -> str | None:
    """Wait for the runner; stop it when it runs too long or its folders grow too big."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            proc.popen.wait(timeout=2.0)
            return None
        except subprocess.TimeoutExpired:
            pass  # still running: check the clock and the folder
        if time.monotonic() > deadline:
            proc.kill()
            return f"the notebook run did not finish within {timeout:.0f} s and was stopped"
        usage = [_folder_usage(folder) for folder in folders]
        size, files = sum(u[0] for u in usage), sum(u[1] for u in usage)
        if size > MAX_RUN_FOLDER or files > MAX_RUN_FILES:
            proc.kill()
            return (f"the notebook wrote more than {MAX_RUN_FOLDER >> 20} MB or {MAX_RUN_FILES} files "
                    "into its folder and was stopped")


def _folder_usage(folder: Path) -> tuple[int, int]:
    size, files, stack = 0, 0, [str(folder)]
    while stack and files <= MAX_RUN_FILES:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    files += 1
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        size += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return size, files


# ----------------------------------------------------------------------------- harvest


def _harvest_one(base: Path, dest: Path, cfg: Config, home: str = ".") -> None:
    """Copy what the checks read out of one notebook's run folder (see the module doc); the
    checkpoints and figures from the notebook's own folder ``home`` (relative to the work folder)."""
    dest.mkdir(parents=True)
    skipped: list[str] = []
    meta_fd = _open_dir(base / "meta")
    work_fd = _open_dir(base / "work")
    for part in Path(home).parts if home != "." else ():  # no link is followed on the way down
        if work_fd is None:
            break
        sub = _open_dir(part, work_fd)
        os.close(work_fd)
        work_fd = sub
    try:
        if meta_fd is not None:
            meta_files = (("run.json", 1 << 20), ("executed.ipynb", MAX_NOTEBOOK),
                          ("events.jsonl", MAX_EVENTS))
            for name, limit in meta_files:
                _copy_regular(meta_fd, name, dest / name, limit, skipped)
            masks_fd = _open_dir("masks", meta_fd)
            if masks_fd is not None:
                (dest / "masks").mkdir()
                try:
                    names = sorted((n for n in os.listdir(masks_fd) if re.fullmatch(r"mask-\d{1,6}\.pt", n)),
                                   key=lambda n: int(n[5:-3]))
                    for name in names[:MAX_MASKS]:
                        _copy_regular(masks_fd, name, dest / "masks" / name, MAX_MASK, skipped)
                finally:
                    os.close(masks_fd)
        figures: list[dict] = []
        if work_fd is not None:
            (dest / "files").mkdir()
            for name in sorted(_collected(cfg)):
                _copy_regular(work_fd, name, dest / "files" / name, MAX_CHECKPOINT, skipped)
            fig_fd = _open_dir("figures", work_fd)
            if fig_fd is not None:
                try:
                    for entry in sorted(os.listdir(fig_fd))[:500]:
                        info = os.stat(entry, dir_fd=fig_fd, follow_symlinks=False)
                        if stat.S_ISREG(info.st_mode):
                            figures.append({"name": entry, "bytes": info.st_size})
                finally:
                    os.close(fig_fd)
        (dest / "figures.json").write_text(json.dumps(figures))
        (dest / "skipped.json").write_text(json.dumps(skipped))
    finally:
        for fd in (meta_fd, work_fd):
            if fd is not None:
                os.close(fd)


def _open_dir(path, dir_fd: int | None = None) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return None


def _copy_regular(dir_fd: int, name: str, dest: Path, limit: int, skipped: list[str]) -> bool:
    """Copy ``name`` (in ``dir_fd``) to ``dest`` if it is a regular file of at most ``limit``
    bytes, never following a link the sandbox may have planted."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            skipped.append(f"{name}: a link, not a regular file")
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            skipped.append(f"{name}: not a regular file")
            return False
        if info.st_size > limit:
            skipped.append(f"{name}: {info.st_size} bytes (limit {limit})")
            return False
        with open(fd, "rb", closefd=False) as src, open(dest, "wb") as out:
            out.write(src.read(limit + 1)[:limit])
        return True
    finally:
        os.close(fd)


def with_cache(options: RunOptions, cache_dir: str | os.PathLike[str] | None) -> RunOptions:
    """``options`` with another cache folder (None: no cache)."""
    return replace(options, cache_dir=str(cache_dir) if cache_dir else None)
