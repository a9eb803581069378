"""Start sandboxed processes: bubblewrap where it works, else a plain subprocess with limits.

Isolation levels (every result records which one graded it, with the detail below):

``bwrap``
    Linux namespaces via bubblewrap: no network, a private PID/IPC/UTS namespace, a read-only view
    of only the Python installation, the grader's worker code, the given files and the submission;
    a size-limited private ``/scratch`` (tmpfs, ``Limits.scratch_mb``); ``--die-with-parent``,
    ``--new-session``. As root the process then drops to an unprivileged uid of its own.
``rlimit``
    A plain subprocess (where bubblewrap is missing or cannot create namespaces), hardened with
    what the kernel offers without namespaces:

    * **Landlock** (Linux >= 5.13, no privileges needed): reads only the system libraries, the
      Python installation and the paths the caller binds (worker code, given files, submission);
      writes only the scratch folder; no TCP bind/connect (ABI >= 4); no signals or abstract
      unix sockets out of the sandbox (ABI >= 6). The grader's tests and reference are unreadable.
    * **An unprivileged uid with no capabilities** when the grader runs as root, in a **private
      mount namespace** (and network and IPC namespaces): ``/dev`` there holds only ``null``,
      ``zero``, ``full``, ``random`` and ``urandom`` (no block device to read a disk from), and
      a folder on the interpreter's path that other users cannot enter (``/root`` when Python
      lives in ``/root/.pyenv``) is covered by an empty tmpfs showing only the interpreter's own
      folder -- so the uid reaches Python without any capability that bypasses file modes
      (issue 14: the old ``CAP_DAC_READ_SEARCH`` let a submission read a raw disk). Where the
      mount namespace cannot be made and the interpreter is out of the uid's reach, the worker
      stays root (the detail says so; Landlock then bounds it).
    * Landlock's ``/dev`` is the same five device files (also without root).
    * The writable folders are plain folders: a watchdog stops the process when they hold more
      than ``Limits.scratch_mb`` or ``Limits.scratch_files`` entries.

Both levels: ``RLIMIT_DATA`` (memory) and ``RLIMIT_AS`` (address space), ``RLIMIT_CPU``,
``RLIMIT_NPROC`` (binds per sandbox because each concurrent sandbox leases a uid of its own, see
:func:`lease_uid`), ``RLIMIT_FSIZE``,
``RLIMIT_NOFILE``, ``RLIMIT_CORE=0``, ``RLIMIT_MSGQUEUE=0``, a scrubbed environment, wall-clock timeouts enforced by the
caller, and drained output: the first ``Limits.output_bytes`` are kept, and a process that prints
more than ``Limits.flood_bytes`` is killed (:attr:`SandboxProcess.stop_reason` says so).

Killing a sandbox kills its whole tree, however it tried to escape: the process group, then (with
a leased uid) every process of that uid at once -- ``kill(-1)`` sent as that uid, which no fork
can race -- or, as a normal user, every descendant and session member found in ``/proc``.

Still weak (documented in ARCHITECTURE.md): memory is limited per process, so a sandbox may use
up to ``processes x memory_mb`` in all; at the ``rlimit`` level without Landlock the filesystem is
readable; a non-root ``rlimit`` sandbox without a network namespace can still send UDP.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Isolation",
    "Limits",
    "SandboxProcess",
    "UidLease",
    "control_exchange",
    "describe_exit",
    "detect_isolation",
    "lease_uid",
    "spawn",
    "stage_dir",
    "sweep_orphaned_uids",
    "system_paths",
]

HERE = Path(__file__).resolve().parent
UID_BASE = 61000  # unprivileged uids for sandboxes when the grader runs as root (61000 + n)
UID_COUNT = 1000
LOCK_DIR = "/run/hw4grade-uids"  # uid leases (root only: /run is not world-writable)
IS_LINUX = sys.platform.startswith("linux")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed process."""

    #: memory the process may allocate (RLIMIT_DATA: heap and private writable mappings)
    memory_mb: int = 4096
    #: address space (RLIMIT_AS); None = memory_mb + 4096. Importing torch alone maps ~3.7 GB
    #: of shared libraries and reservations, so an address-space cap equal to ``memory_mb`` would
    #: leave a student a few hundred MB; RLIMIT_DATA counts what they allocate.
    address_space_mb: int | None = None
    cpu_seconds: int = 900
    processes: int = 64  # processes *and threads* of the sandbox's uid
    file_mb: int = 64  # largest file it may write
    open_files: int = 256
    output_bytes: int = 1 << 20  # stdout/stderr kept for feedback
    flood_bytes: int = 32 << 20  # stdout/stderr after which the process is killed
    scratch_mb: int = 256
    scratch_files: int = 10_000  # entries in the scratch folder (rlimit level, watched)


@dataclass(frozen=True)
class Isolation:
    """How a sandbox is built here. ``level`` is ``bwrap`` or ``rlimit``; ``detail`` is recorded
    in every result. The other fields say which hardening of the ``rlimit`` level applies."""

    level: str
    detail: str
    #: root only: "unprivileged" (a plain uid without capabilities), "root" (stays root: the
    #: interpreter is out of an unprivileged uid's reach and no mount namespace can show it)
    uid_mode: str = ""
    landlock: int = 0  # Landlock ABI in use (rlimit level), 0 = none
    netns: bool = False  # private network and IPC namespaces (rlimit level, root)
    mountns: bool = False  # private mount namespace: /dev cut, hidden interpreter folders shown

    def describe(self) -> str:
        return f"{self.level} ({self.detail})"


# ----------------------------------------------------------------------------- detection


@functools.lru_cache(maxsize=4)
def detect_isolation(preferred: str = "auto") -> Isolation:
    """The strongest isolation this machine offers (``preferred``: auto, bwrap or rlimit).

    Raises:
        RuntimeError: ``preferred="bwrap"`` where bubblewrap is missing or cannot sandbox.
        ValueError: an unknown ``preferred``.
    """
    if preferred not in ("auto", "bwrap", "rlimit"):
        raise ValueError(f"isolation {preferred!r}: expected auto, bwrap or rlimit")
    if preferred == "rlimit":
        return _rlimit_isolation("")
    bwrap = shutil.which("bwrap")
    if not bwrap:
        if preferred == "bwrap":
            raise RuntimeError("bubblewrap (bwrap) is not installed")
        return _rlimit_isolation("bubblewrap not installed")
    probe = subprocess.run(
        [bwrap, *_bwrap_namespace_flags(), "--ro-bind", "/", "/", "--", "true"],
        capture_output=True, timeout=20, check=False,
    )
    if probe.returncode != 0:
        why = probe.stderr.decode(errors="replace").strip()[:200]
        if preferred == "bwrap":
            raise RuntimeError(f"bubblewrap cannot create a sandbox here: {why}")
        return _rlimit_isolation(f"bubblewrap unusable: {why}")
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        # bwrap as root without a way to drop to a uid would run student code as root.
        if preferred == "bwrap":
            raise RuntimeError("running as root needs setpriv (util-linux) to drop privileges")
        return _rlimit_isolation("setpriv (util-linux) missing: cannot drop root inside bubblewrap")
    parts = ["namespaces: pid, net, ipc, uts", "private read-only filesystem view", "tmpfs scratch"]
    if os.geteuid() == 0:
        parts.append("unprivileged uid per sandbox")
    return Isolation("bwrap", ", ".join(parts), uid_mode="unprivileged" if os.geteuid() == 0 else "")


def _rlimit_isolation(why_not_bwrap: str) -> Isolation:
    landlock = landlock_abi()
    root = os.geteuid() == 0
    parts = ["resource limits", "own session"]
    uid_mode = ""
    mountns = root and _can_unshare(_CLONE_NEWNS)
    if root:
        setpriv = shutil.which("setpriv")
        if setpriv and (mountns or _others_can_run(sys.executable)):
            uid_mode = "unprivileged"
            parts.append("unprivileged uid per sandbox without capabilities (process-count limit binds)")
        else:
            uid_mode = "root"
            parts.append("runs as root: the interpreter is not reachable by an unprivileged uid, "
                         "so the process-count limit does not bind (fork bombs are stopped by "
                         "killing the process group and session at the timeout)")
    if mountns:
        parts.append("private mount namespace: /dev holds only " + ", ".join(DEV_NODES))
    if landlock:
        parts.append(f"Landlock ABI {landlock}: reads only the Python installation, worker code, "
                     "given files and submission; writes only the scratch folder"
                     + ("; no TCP" if landlock >= 4 else ""))
    else:
        parts.append("no Landlock: the filesystem is readable (output is redacted)")
    netns = root and _can_unshare(_CLONE_NEWNET | _CLONE_NEWIPC)
    if netns:
        parts.append("private network and IPC namespaces")
    elif landlock < 4:
        parts.append("network NOT isolated")
    if why_not_bwrap:
        parts.append(why_not_bwrap)
    return Isolation("rlimit", ", ".join(parts), uid_mode=uid_mode, landlock=landlock, netns=netns,
                     mountns=mountns)


@functools.lru_cache(maxsize=4)
def _others_can_run(executable: str) -> bool:
    """Can a uid with no special rights execute ``executable`` (every folder on the way +x)?"""
    for path in {executable, os.path.realpath(executable)}:
        parent = os.path.dirname(path)
        while parent not in ("", "/"):
            if not os.stat(parent).st_mode & 0o001:
                return False
            parent = os.path.dirname(parent)
        if not os.stat(path).st_mode & 0o005 == 0o005:
            return False
    return True


def _bwrap_namespace_flags() -> list[str]:
    flags = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if os.geteuid() != 0:
        flags.append("--unshare-user")
    return flags


def stage_dir(prefix: str = "hw4-sandbox-") -> Path:
    """A fresh staging folder readable by the sandbox uid (mode 0755)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# ----------------------------------------------------------------------------- libc helpers

_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    # Loaded in the parent: a child between fork and exec must not dlopen (loader locks).
    global _LIBC  # noqa: PLW0603 - loaded once, in the parent
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
        _LIBC.syscall.restype = ctypes.c_long
    return _LIBC


_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWNET = 0x00020000, 0x08000000, 0x40000000
_PR_SET_NO_NEW_PRIVS = 38
_MS_NOSUID, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 32, 4096, 16384, 1 << 18
#: the device files a sandbox sees (rlimit level): what Python, NumPy and torch use
DEV_NODES = ("null", "zero", "full", "random", "urandom")


def _unshare(flags: int) -> None:  # in the child, between fork and exec
    if _libc().unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), f"unshare({flags:#x}) failed")


@functools.lru_cache(maxsize=4)
def _can_unshare(flags: int) -> bool:
    if not IS_LINUX:
        return False
    _libc()
    try:
        subprocess.run(["true"], preexec_fn=functools.partial(_unshare, flags), check=True, timeout=20,
                       capture_output=True)
    except (subprocess.SubprocessError, OSError):
        return False
    return True


@dataclass(frozen=True)
class _MountPlan:
    """What the child's private mount namespace shows (rlimit level, as root): ``hidden``
    folders the sandbox uid cannot enter, each with the paths under it to show again (computed
    in the parent: the child between fork and exec must not walk the filesystem in Python)."""

    hidden: tuple[tuple[str, tuple[str, ...]], ...]
    #: folders covered by an empty tmpfs (the grader's own installed packages: :func:`hidden_paths`)
    empty: tuple[str, ...] = ()


@functools.lru_cache(maxsize=1)
def _mount_plan() -> _MountPlan:
    hidden: dict[str, set[str]] = {}
    for path in {os.path.realpath(p) for p in system_paths()}:
        top = _unreachable_ancestor(path)
        if top is not None:
            hidden.setdefault(top, set()).add(path)
    # a path inside another shown path comes with it
    plan = {top: tuple(sorted(p for p in paths if not any(p.startswith(q + "/") for q in paths)))
            for top, paths in hidden.items()}
    return _MountPlan(tuple(sorted(plan.items())), tuple(hidden_paths()))


def _unreachable_ancestor(path: str) -> str | None:
    """The outermost folder on ``path`` that other users cannot enter (no o+x), if any."""
    parts = path.split("/")[1:]
    for i in range(1, len(parts)):
        folder = "/" + "/".join(parts[:i])
        if not os.stat(folder).st_mode & 0o001:
            return folder
    return None


def _private_mounts(plan: _MountPlan, devices: Sequence[str] = ()) -> None:  # in the child, before exec
    """Enter a private mount namespace; cover each hidden folder with an empty tmpfs that shows
    only the plan's paths, and ``/dev`` with one that holds only :data:`DEV_NODES` and the
    ``devices`` the caller binds (a GPU's ``/dev/nvidia*``). (The paths are opened after the
    unshare: a bind mount's source must be a mount of this namespace.)"""
    libc = _libc()

    def mount(source: bytes | None, target: str, fstype: bytes | None, flags: int, data: bytes | None) -> None:
        if libc.mount(source, target.encode(), fstype, flags, data) != 0:
            raise OSError(ctypes.get_errno(), f"mount on {target} failed")

    _unshare(_CLONE_NEWNS)
    mount(None, "/", None, _MS_REC | _MS_PRIVATE, None)
    opened = {path: os.open(path, os.O_PATH) for _, shown in plan.hidden for path in shown}
    nodes = {}
    for name in [*DEV_NODES, *(d[len("/dev/"):] for d in devices)]:
        with contextlib.suppress(OSError):
            nodes[name] = os.open(f"/dev/{name}", os.O_PATH)
    for folder, shown in plan.hidden:
        mount(b"tmpfs", folder, b"tmpfs", _MS_NOSUID, b"mode=0755,size=1m")
        for path in shown:
            inner = folder
            for part in path[len(folder) + 1:].split("/"):
                inner = f"{inner}/{part}"
                with contextlib.suppress(FileExistsError):
                    os.mkdir(inner, 0o755)
            mount(f"/proc/self/fd/{opened[path]}".encode(), inner, None, _MS_BIND | _MS_REC, None)
    for folder in plan.empty:
        mount(b"tmpfs", folder, b"tmpfs", _MS_NOSUID, b"mode=0755,size=64k")
    mount(b"tmpfs", "/dev", b"tmpfs", _MS_NOSUID, b"mode=0755,size=64k")
    for name, fd in nodes.items():
        if "/" in name:
            continue  # only devices directly in /dev
        os.close(os.open(f"/dev/{name}", os.O_CREAT | os.O_WRONLY, 0o666))
        mount(f"/proc/self/fd/{fd}".encode(), f"/dev/{name}", None, _MS_BIND, None)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{name}")
    for fd in [*opened.values(), *nodes.values()]:
        os.close(fd)


# Landlock (include/uapi/linux/landlock.h). Syscall numbers are the same on every architecture
# the kernel added them for after the 2019 unification (x86_64, arm64, riscv, ...).
_LL_CREATE, _LL_ADD_RULE, _LL_RESTRICT = 444, 445, 446
_LL_VERSION_FLAG = 1
_LL_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FS_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@functools.lru_cache(maxsize=1)
def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers (0: none, or not Linux)."""
    if not IS_LINUX or os.environ.get("HW4_NO_LANDLOCK"):
        return 0
    try:
        version = _libc().syscall(_LL_CREATE, None, 0, _LL_VERSION_FLAG)
    except (OSError, AttributeError):
        return 0
    return int(version) if version > 0 else 0


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: execute .. make_sym
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


def _landlock_ruleset(abi: int, readable: Sequence[str], writable: Sequence[str],
                      listable: Sequence[str] = ()) -> int:
    """A Landlock ruleset fd (close-on-exec): read ``readable``, read and write ``writable``, list
    the folders under ``listable`` (names only), nothing else; no TCP and scoped signals/abstract
    sockets where the ABI has them."""
    handled = _fs_rights(abi)
    attr = _RulesetAttr(handled, (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0,
                        (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0)
    libc = _libc()
    fd = libc.syscall(_LL_CREATE, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    fd = int(fd)
    try:
        for paths, access in ((readable, _FS_READ), (writable, handled), (listable, _FS_READ_DIR)):
            for path in paths:
                try:
                    pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue  # a system path this machine lacks
                try:
                    is_dir = os.path.isdir(path)
                    rule = _PathBeneath((access if is_dir else access & _FILE_ONLY) & handled, pfd)
                    if libc.syscall(_LL_ADD_RULE, fd, _LL_RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                        raise OSError(ctypes.get_errno(), f"landlock_add_rule({path}) failed")
                finally:
                    os.close(pfd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _landlock_restrict(fd: int) -> None:  # in the child, between fork and exec
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.syscall(_LL_RESTRICT, fd, 0) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")


# ----------------------------------------------------------------------------- uid leases


@dataclass
class UidLease:
    """An unprivileged uid this process holds for one sandbox (an exclusive lock file)."""

    uid: int
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1


def lease_uid(preferred_slot: int = 0) -> UidLease | None:
    """Lease a uid no other sandbox on this machine uses now (``None`` unless running as root).

    RLIMIT_NPROC counts every process of a uid, and the kill sweep signals every process of it:
    both are only safe when no two concurrent sandboxes -- of this grader or of another grading
    process on the machine -- share a uid. The lease is a ``flock`` on ``/run/hw4grade-uids/<uid>``,
    released when the sandbox is killed (or when this process dies). The uid is swept clean of
    leftover processes before it is handed out.
    """
    if os.geteuid() != 0:
        return None
    os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
    info = os.lstat(LOCK_DIR)
    if info.st_uid != 0 or info.st_mode & 0o022 or not os.path.isdir(LOCK_DIR):
        raise RuntimeError(f"{LOCK_DIR} is not a root-owned private folder; refusing to lease uids")
    for i in range(UID_COUNT):
        uid = UID_BASE + (preferred_slot + i) % UID_COUNT
        fd = os.open(os.path.join(LOCK_DIR, str(uid)), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                continue
            raise
        kill_uid(uid)
        return UidLease(uid, fd)
    raise RuntimeError(f"all {UID_COUNT} sandbox uids are in use")


def kill_uid(uid: int, rounds: int = 50) -> bool:
    """SIGKILL every process of ``uid`` (root only); True when none is left.

    ``kill(-1, SIGKILL)`` sent *as* ``uid`` reaches all its processes in one pass under the
    kernel's task-list lock, so a fork bomb cannot outrun it.
    """
    if uid < UID_BASE or os.geteuid() != 0:
        raise ValueError(f"kill_uid({uid}): only leased sandbox uids, and only as root")

    def as_uid() -> None:
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        os.kill(-1, signal.SIGKILL)

    for _ in range(rounds):
        if not _pids_of_uid(uid):
            return True
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(["true"], preexec_fn=as_uid, check=False, timeout=10)
        time.sleep(0.02)
    return not _pids_of_uid(uid)


def sweep_orphaned_uids() -> list[int]:
    """Kill every process of a sandbox uid that no live grading process leases (root only).

    A grading process killed outright (a batch's Ctrl-C SIGKILLs its children) never kills its
    sandbox: at the ``rlimit`` level the worker, and any daemon it forked into a session of its
    own, would live on. Their uid's lease went with the dead process (its ``flock`` is free), so
    whatever still runs as that uid is an orphan. Uids leased by live sandboxes -- of this
    grader or of another grading process on the machine -- are left alone. Returns the uids
    swept.
    """
    if os.geteuid() != 0 or not os.path.isdir(LOCK_DIR):
        return []
    swept = []
    for uid in sorted(_sandbox_uids_running()):
        fd = os.open(os.path.join(LOCK_DIR, str(uid)), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live sandbox holds it
        try:
            kill_uid(uid)
            swept.append(uid)
        finally:
            os.close(fd)
    return swept


def _sandbox_uids_running() -> set[int]:
    """Sandbox uids (real, effective or saved) that some process runs as, in one /proc scan."""
    found: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("Uid:"):
                        found.update(int(u) for u in line.split()[1:4] if UID_BASE <= int(u) < UID_BASE + UID_COUNT)
                        break
        except (OSError, ValueError):
            continue
    return found


def _pids_of_uid(uid: int) -> list[int]:
    """Processes whose real, effective or saved uid is ``uid`` (``/proc/<pid>`` itself belongs
    to root for a process that is not dumpable, so read the ``Uid:`` line)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("Uid:"):
                        if str(uid) in line.split()[1:4]:
                            out.append(int(name))
                        break
        except OSError:
            continue
    return out


def _tree_and_session(root_pid: int) -> set[int]:
    """Descendants of ``root_pid`` and members of its session/process group (from /proc)."""
    children: dict[int, list[int]] = {}
    members = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        pid, ppid, pgrp, sid = int(name), int(fields[1]), int(fields[2]), int(fields[3])
        children.setdefault(ppid, []).append(pid)
        if root_pid in (pgrp, sid):
            members.add(pid)
    found, todo = set(), [root_pid, *members]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    found.discard(os.getpid())
    return found



def host_pid(ns_pid: int, root_pid: int) -> int | None:
    """The pid, as this process sees it, of the process of the sandbox started as ``root_pid``
    that is ``ns_pid`` in its own (innermost) pid namespace; None if there is none. Without a
    pid namespace the two are the same number; looking among ``root_pid``'s descendants only
    tells two sandboxes' pid 7 apart."""
    for pid in _tree_and_session(root_pid):
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
                nspid = next((line.split()[1:] for line in fh if line.startswith("NSpid:")), [str(pid)])
        except OSError:
            continue
        if nspid and nspid[-1] == str(ns_pid):
            return pid
    return None


# ----------------------------------------------------------------------------- processes


@dataclass
class SandboxProcess:
    """A running sandboxed process with its drained, capped output."""

    popen: subprocess.Popen
    isolation: Isolation
    limits: Limits
    lease: UidLease | None = None
    output: bytearray = field(default_factory=bytearray)
    output_total: int = 0
    #: why a watchdog killed the process ("printed more than ..."), for the student's feedback
    stop_reason: str | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reaped: bool = False

    @property
    def uid(self) -> int | None:
        return self.lease.uid if self.lease else None

    @property
    def root_pid(self) -> int:
        """The sandbox's first process: everything it runs descends from it."""
        return self.popen.pid

    def drain(self, stream) -> None:
        """Read a stream to its end, keeping the first ``limits.output_bytes`` bytes; kill the
        process once it printed more than ``limits.flood_bytes``."""

        def run() -> None:
            read_capped(self, stream, lambda: self.stop(flood_reason(self.limits)))
            with contextlib.suppress(OSError):
                stream.close()

        thread = threading.Thread(target=run, daemon=True, name="sandbox-drain")
        thread.start()
        self._threads.append(thread)

    def watch_disk(self, folders: Sequence[str], interval: float = 0.2) -> None:
        """Stop the process when ``folders`` together hold more than ``limits.scratch_mb`` or
        ``limits.scratch_files`` entries (the rlimit level's writable folders are plain ones)."""
        max_bytes, max_files = self.limits.scratch_mb << 20, self.limits.scratch_files

        def run() -> None:
            while self.popen.poll() is None:
                size = count = 0
                for folder in folders:
                    s, c = disk_usage(Path(folder), max_files - count + 1)
                    size, count = size + s, count + c
                if size > max_bytes:
                    self.stop(f"wrote more than {self.limits.scratch_mb} MB to its scratch folder")
                    return
                if count > max_files:
                    self.stop(f"created more than {max_files} files in its scratch folder")
                    return
                time.sleep(interval)

        threading.Thread(target=run, daemon=True, name="sandbox-disk").start()

    def stop(self, reason: str) -> None:
        """A watchdog's kill: remember why, then kill the tree (the session sees it die).

        Under the lock, and never once :meth:`kill` reaped the process: by then its uid may be
        leased to the next sandbox (and its pid reused), which a late sweep would kill.
        """
        if self.stop_reason is None:
            self.stop_reason = reason
        with self._lock:
            if not self._reaped:
                self._kill_tree()

    def output_text(self) -> str:
        return output_text(self)

    def _kill_tree(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, OSError):
            self.popen.kill()
        if self.lease is not None:
            kill_uid(self.lease.uid)
        elif IS_LINUX:
            # No uid of its own: hunt the tree and the session down in /proc until it is empty.
            for _ in range(50):
                pids = _tree_and_session(self.popen.pid) - {self.popen.pid}
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.01)

    def kill(self) -> None:
        """Kill the whole process tree, reap it, and give its uid back."""
        with self._lock:
            if self._reaped:
                return
            self._kill_tree()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
            # Only a uid with no process left may be handed to the next sandbox.
            if self.lease is not None and kill_uid(self.lease.uid):
                self.lease.release()
            self._reaped = True
        # Outside the lock: a drain thread may be waiting for it in stop().
        for thread in self._threads:
            thread.join(timeout=2)

    def exit_description(self) -> str:
        if self.stop_reason:
            return f"was stopped: it {self.stop_reason}"
        code = self.popen.poll()
        if code is None:
            return "still running"
        if self.isolation.level == "bwrap" and 128 < code < 128 + 65:
            code = 128 - code  # bwrap's init reports a signal death as 128 + signal number
        return describe_exit(code)


def read_capped(owner, stream, on_flood, stop_at_flood: bool = False) -> None:
    """Read ``stream`` to its end into ``owner.output``, keeping the first
    ``owner.limits.output_bytes`` bytes and counting all in ``owner.output_total``; call
    ``on_flood()`` once more than ``limits.flood_bytes`` came (then stop reading if
    ``stop_at_flood``). ``owner``: a :class:`SandboxProcess` or a ``shared.BorrowedProcess``."""
    limits = owner.limits
    while True:
        try:
            chunk = stream.read(65536)
        except (OSError, ValueError):
            return
        if not chunk:
            return
        owner.output_total += len(chunk)
        room = limits.output_bytes - len(owner.output)
        if room > 0:
            owner.output.extend(chunk[:room])
        if owner.output_total > limits.flood_bytes and owner.stop_reason is None:
            on_flood()
            if stop_at_flood:
                return


def control_exchange(ctl: socket.socket, message: dict, fds: Sequence[int] = (), timeout: float = 10.0) -> bytes:
    """One request on a zygote's control socket (``worker.zygote``): the message as JSON with
    ``fds`` passed alongside, and the raw reply (``b""``: the zygote closed the socket).

    Raises:
        TimeoutError: no reply in ``timeout`` seconds. OSError: the socket failed.
    """
    ctl.settimeout(timeout)
    socket.send_fds(ctl, [json.dumps(message).encode()], list(fds))
    return ctl.recv(1 << 16)


def flood_reason(limits: Limits) -> str:
    return f"printed more than {limits.flood_bytes >> 20} MB of output"


def output_text(owner) -> str:
    """What ``owner`` (see :func:`read_capped`) kept of its output, saying when it was cut."""
    text = bytes(owner.output).decode("utf-8", errors="replace")
    if owner.output_total > len(owner.output):
        text += f"\n[... output truncated: {owner.output_total} bytes in all, first {len(owner.output)} kept]"
    return text


def describe_exit(code: int) -> str:
    """An exit code (negative: killed by that signal) as feedback reads it."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}{_SIGNAL_HINTS.get(name, '')}"
    return f"exited with status {code}"


def disk_usage(path: Path, max_entries: int) -> tuple[int, int]:
    """(bytes allocated, entries) under ``path``, not following symlinks; stops counting past
    ``max_entries`` so a folder of a million files costs a bounded scan."""
    total, count = 0, 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    count += 1
                    if count > max_entries:
                        return total, count
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return total, count


_SIGNAL_HINTS = {"SIGSEGV": " (a segmentation fault)", "SIGXCPU": " (its CPU time limit)",
                 "SIGXFSZ": " (its file size limit)", "SIGABRT": " (aborted)", "SIGBUS": " (a bus error)"}


def system_paths() -> list[str]:
    """What any Python process needs to see: system libraries and the interpreter in use."""
    return [host for host, _ in _system_binds()]


@functools.lru_cache(maxsize=1)
def hidden_paths() -> list[str]:
    """The grader's own packages where a sandbox would see them: an installed (non-editable) full
    edition puts ``reference/`` (the solutions) and ``grader/`` (the rubric tests in
    ``grader/_bundle``) in the environment's site-packages, under the interpreter's prefix that
    every sandbox reads. They are hidden (bwrap: an empty tmpfs over each; Landlock: no read
    right under them). A checkout or an editable install keeps them outside: nothing to hide."""
    import grader
    import reference

    bound = [os.path.realpath(p) for p in system_paths()]
    out = []
    for package in (grader, reference):
        path = os.path.realpath(os.path.dirname(package.__file__ or ""))
        if any(path.startswith(b.rstrip("/") + "/") for b in bound):
            out.append(path)
    return out


def _system_paths_around(hidden: Sequence[str]) -> tuple[list[str], list[str]]:
    """``system_paths()`` without ``hidden`` (for Landlock, whose rules only add rights): a path
    that holds a hidden one is replaced by its other entries, and it and the folders down to the
    hidden one stay listable (names only), so the interpreter still finds the packages beside it.
    Returns (readable, listable)."""
    if not hidden:
        return system_paths(), []
    readable: list[str] = []
    listable: list[str] = []
    seen: set[str] = set()

    def walk(path: str) -> None:
        # a rule follows symlinks (a venv's lib64 -> lib): compare where entries really are
        path = os.path.realpath(path)
        if path in hidden or path in seen:
            return
        seen.add(path)
        if not any(h.startswith(path.rstrip("/") + "/") for h in hidden):
            readable.append(path)
            return
        listable.append(path)
        for entry in sorted(os.listdir(path)):
            walk(os.path.join(path, entry))

    for path in system_paths():
        walk(os.path.realpath(path))
    return readable, listable


def spawn(
    argv: list[str],
    *,
    isolation: Isolation,
    limits: Limits,
    binds: Sequence[tuple[str, str]],
    rw_binds: Sequence[tuple[str, str]] = (),
    env: dict[str, str],
    cwd: str,
    pass_fds: tuple[int, ...] = (),
    slot: int = 0,
    tmpfs_scratch: str | None = None,
    lease: UidLease | None = None,
) -> SandboxProcess:
    """Start ``argv`` sandboxed.

    Args:
        argv: the command, with paths as the sandbox sees them.
        binds: read-only ``(host, sandbox)`` path pairs. At the ``rlimit`` level the host paths
            are what Landlock lets the process read (the sandbox path is ignored).
        rw_binds: writable ``(host, sandbox)`` pairs (``rlimit``: the only writable paths).
        env: the whole environment of the process.
        cwd: the working directory (sandbox path).
        pass_fds: file descriptors the process inherits (the channel).
        slot: which concurrent sandbox this is: the preferred uid when running as root.
        tmpfs_scratch: a sandbox path to mount as a size-limited tmpfs (bwrap level only).
        lease: a uid lease to use (default: lease one here; it is released by ``kill()``).

    Raises:
        OSError / subprocess.SubprocessError: the sandbox could not be started (a grader fault).
    """
    root = os.geteuid() == 0
    if lease is None and root and isolation.uid_mode != "root":
        lease = lease_uid(slot)
    try:
        return _spawn(argv, isolation, limits, binds, rw_binds, env, cwd, pass_fds, tmpfs_scratch, lease)
    except BaseException:
        if lease is not None:
            kill_uid(lease.uid)
            lease.release()
        raise


def _spawn(argv: list[str], isolation: Isolation, limits: Limits, binds: Sequence[tuple[str, str]],
           rw_binds: Sequence[tuple[str, str]], env: dict[str, str], cwd: str, pass_fds: tuple[int, ...],
           tmpfs_scratch: str | None, lease: UidLease | None) -> SandboxProcess:
    uid = lease.uid if lease else None
    ruleset = -1
    plan: _MountPlan | None = None
    devices: list[str] = []
    if isolation.level == "bwrap":
        cmd = [shutil.which("bwrap") or "bwrap", *_bwrap_namespace_flags(), "--die-with-parent",
               "--new-session", "--clearenv"]
        all_binds = _system_binds() + list(binds)
        # bwrap creates missing parent folders as 0700 root: the unprivileged uid could not
        # walk through them, so create each one first as 0755.
        for parent in _parents([inside for _, inside in all_binds + list(rw_binds)]):
            cmd += ["--perms", "0755", "--dir", parent]
        for host, inside in all_binds:
            cmd += ["--ro-bind", host, inside]
        for hidden in hidden_paths():
            cmd += ["--tmpfs", hidden]  # an empty folder over the grader's own installed packages
        for host, inside in rw_binds:
            cmd += ["--bind", host, inside]
        cmd += ["--proc", "/proc", "--dev", "/dev"]
        if tmpfs_scratch:
            cmd += ["--perms", "1777", "--size", str(limits.scratch_mb << 20), "--tmpfs", tmpfs_scratch]
        for key, value in env.items():
            cmd += ["--setenv", key, value]
        cmd += ["--chdir", cwd, "--"]
        if uid is not None:
            cmd += _setpriv(uid)
        cmd += argv
        popen_env: dict[str, str] | None = {"PATH": "/usr/bin:/bin"}
        run_cwd = None
    else:
        cmd = [*(_setpriv(uid) if uid is not None else []), *argv]
        popen_env, run_cwd = dict(env), cwd
        if isolation.landlock:
            devices = [f"/dev/{name}" for name in DEV_NODES]
            system, listable = _system_paths_around(hidden_paths())
            readable = [*system, "/proc", "/sys", *devices, *(host for host, _ in binds)]
            writable = [*(host for host, _ in rw_binds), "/dev/null"]
            ruleset = _landlock_ruleset(isolation.landlock, readable, writable, listable)
        if isolation.mountns:
            plan = _mount_plan()
            devices = [host for host, _ in [*binds, *rw_binds] if host.startswith("/dev/")]
    own_uid = uid is not None or os.geteuid() == 0
    nproc = limits.processes if own_uid else _user_process_count() + limits.processes
    if IS_LINUX:
        _libc()  # loaded here, never in the child

    def preexec() -> None:  # runs in the child between fork and exec: no imports, no locks
        _set_limits(limits, nproc)
        if isolation.level == "rlimit":
            if isolation.netns:
                _unshare(_CLONE_NEWNET | _CLONE_NEWIPC)
            if plan is not None:
                _private_mounts(plan, devices)
            if ruleset >= 0:
                _landlock_restrict(ruleset)

    try:
        popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=popen_env,
            cwd=run_cwd,
            pass_fds=pass_fds,
            start_new_session=True,
            preexec_fn=preexec,  # noqa: PLW1509 - rlimits/uid before exec; async-signal-safe calls only
        )
    finally:
        if ruleset >= 0:
            os.close(ruleset)
    proc = SandboxProcess(popen, isolation, limits, lease=lease)
    proc.drain(popen.stdout)
    if isolation.level == "rlimit":
        # bwrap's tmpfs has a size; the rlimit level's writable folders are plain ones: watch them.
        folders = [host for host, _ in rw_binds if os.path.isdir(host)]
        if folders:
            proc.watch_disk(folders)
    return proc


def _setpriv(uid: int) -> list[str]:
    """Become ``uid`` with no capabilities at all (none kept, none inheritable, an empty bounding
    set) and no way to gain any (no_new_privs: setuid files do not elevate)."""
    return [shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]


def _parents(paths: list[str]) -> list[str]:
    """Every proper ancestor folder of ``paths`` (not ``/``), shallowest first."""
    out: set[str] = set()
    for path in paths:
        parent = os.path.dirname(path.rstrip("/"))
        while parent not in ("", "/"):
            out.add(parent)
            parent = os.path.dirname(parent)
    bound = set(paths)
    return sorted((p for p in out if p not in bound), key=lambda p: (p.count("/"), p))


def _set_limits(limits: Limits, nproc: int) -> None:
    mb = 1 << 20
    address_space = limits.address_space_mb or limits.memory_mb + 4096
    resource.setrlimit(resource.RLIMIT_DATA, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_AS, (address_space * mb, address_space * mb))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # No POSIX message queues: they would outlive a worker and carry data to the next one.
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
    # RLIMIT_NPROC counts every process and thread of the uid: with a leased uid that is the
    # sandbox alone; as a normal user it includes the user's own, counted before the start.
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def _user_process_count() -> int:
    if not IS_LINUX:
        return 512
    uid = os.getuid()
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                continue
    return count


@functools.lru_cache(maxsize=1)
def _system_binds() -> list[tuple[str, str]]:
    """What any Python process needs to see: system libraries and the interpreter in use."""
    paths = ["/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc/ld.so.cache", "/etc/ld.so.conf",
             "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime", "/etc/fonts"]
    for prefix in {sys.prefix, sys.base_prefix, os.path.realpath(sys.base_prefix),
                   os.path.dirname(os.path.realpath(sys.executable))}:
        if not prefix.startswith(("/usr", "/bin", "/lib")):
            paths.append(prefix)
    seen, binds = set(), []
    for path in paths:
        if os.path.exists(path) and path not in seen:
            seen.add(path)
            binds.append((path, path))
    return binds

