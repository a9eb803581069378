"""Start sandboxed processes: bubblewrap where it works, else a plain subprocess with limits.

Isolation levels (recorded in every result):

``bwrap``
    Linux namespaces via bubblewrap: no network, a private PID/IPC/UTS namespace, a read-only view
    of only the Python installation, the grader's worker code, the given files, the fixture data
    and the submission; a size-limited private ``/scratch`` (tmpfs) or a bound scratch folder;
    ``--die-with-parent``, ``--new-session``. As root the process then drops to an unprivileged
    uid of its own (one per concurrent sandbox, so a fork bomb only meets its own process limit).
``rlimit``
    A plain subprocess (where bubblewrap is missing or cannot create namespaces): its own session,
    an unprivileged uid when the grader runs as root (plus a private network namespace when that
    is allowed), the same resource limits. The filesystem is *not* hidden at this level.

Both levels: ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_NPROC``, ``RLIMIT_FSIZE``,
``RLIMIT_NOFILE``, ``RLIMIT_CORE=0``, a scrubbed environment, wall-clock timeouts enforced by the
caller, and capped, drained output.
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Limits", "Isolation", "SandboxProcess", "detect_isolation", "stage_dir", "spawn"]

HERE = Path(__file__).resolve().parent
UID_BASE = 61000  # unprivileged uids for sandboxes when the grader runs as root (61000 + slot)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed process."""

    memory_mb: int = 4096
    cpu_seconds: int = 900
    processes: int = 64
    file_mb: int = 64
    open_files: int = 256
    output_bytes: int = 1 << 20
    scratch_mb: int = 256


@dataclass(frozen=True)
class Isolation:
    level: str  # "bwrap" or "rlimit"
    detail: str

    def describe(self) -> str:
        return f"{self.level} ({self.detail})"


@functools.lru_cache(maxsize=1)
def detect_isolation(preferred: str = "auto") -> Isolation:
    """The strongest isolation this machine offers (``preferred``: auto, bwrap or rlimit)."""
    if preferred == "rlimit":
        return Isolation("rlimit", _rlimit_detail())
    bwrap = shutil.which("bwrap")
    if bwrap:
        probe = subprocess.run(
            [bwrap, *_bwrap_namespace_flags(), "--ro-bind", "/", "/", "--", "true"],
            capture_output=True, timeout=20, check=False,
        )
        if probe.returncode == 0:
            return Isolation("bwrap", "namespaces: pid, net, ipc, uts; private filesystem view")
        why = probe.stderr.decode(errors="replace").strip()[:200]
        if preferred == "bwrap":
            raise RuntimeError(f"bubblewrap cannot create a sandbox here: {why}")
        return Isolation("rlimit", f"{_rlimit_detail()}; bubblewrap unusable: {why}")
    if preferred == "bwrap":
        raise RuntimeError("bubblewrap (bwrap) is not installed")
    return Isolation("rlimit", f"{_rlimit_detail()}; bubblewrap not installed")


def _rlimit_detail() -> str:
    parts = ["resource limits", "own session"]
    if os.geteuid() == 0:
        if _others_can_run(sys.executable):
            parts.append("unprivileged uid, private network")
        else:
            parts.append("runs as root: the interpreter is not reachable by an unprivileged uid, "
                         "so the process-count limit does not bind")
    return ", ".join(parts)


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


@dataclass
class SandboxProcess:
    """A running sandboxed process with its drained, capped output."""

    popen: subprocess.Popen
    isolation: Isolation
    limits: Limits
    output: bytearray = field(default_factory=bytearray)
    output_total: int = 0
    _threads: list[threading.Thread] = field(default_factory=list)

    def drain(self, stream) -> None:
        """Read a stream to its end, keeping the first ``limits.output_bytes`` bytes."""

        def run() -> None:
            while True:
                chunk = stream.read(65536)
                if not chunk:
                    break
                self.output_total += len(chunk)
                room = self.limits.output_bytes - len(self.output)
                if room > 0:
                    self.output.extend(chunk[:room])
            stream.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)

    def output_text(self) -> str:
        text = bytes(self.output).decode("utf-8", errors="replace")
        if self.output_total > len(self.output):
            text += f"\n[... output truncated: {self.output_total} bytes in all, first {len(self.output)} kept]"
        return text

    def kill(self) -> None:
        """Kill the whole process tree (its session / PID namespace) and reap it."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.popen.kill()
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for thread in self._threads:
            thread.join(timeout=2)

    def exit_description(self) -> str:
        code = self.popen.poll()
        if code is None:
            return "still running"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"killed by {name}" + (" (out of memory or CPU time?)" if -code in (9, 24) else "")
        return f"exited with status {code}"


def spawn(
    argv: list[str],
    *,
    isolation: Isolation,
    limits: Limits,
    binds: list[tuple[str, str]],
    rw_binds: list[tuple[str, str]] = (),  # type: ignore[assignment]
    env: dict[str, str],
    cwd: str,
    pass_fds: tuple[int, ...] = (),
    slot: int = 0,
    tmpfs_scratch: str | None = None,
) -> SandboxProcess:
    """Start ``argv`` sandboxed.

    Args:
        argv: the command, with paths as the sandbox sees them (bwrap binds host paths to the
            same paths, so one argv serves both levels).
        binds: read-only ``(host, sandbox)`` path pairs (bwrap level; ignored at rlimit level).
        rw_binds: writable ``(host, sandbox)`` pairs.
        env: the whole environment of the process.
        cwd: the working directory (sandbox path).
        pass_fds: file descriptors the process inherits (the channel).
        slot: which concurrent sandbox this is (picks its uid when running as root).
        tmpfs_scratch: a sandbox path to mount as a size-limited tmpfs (bwrap level only).
    """
    uid = UID_BASE + slot % 1000
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
        for host, inside in rw_binds:
            cmd += ["--bind", host, inside]
        cmd += ["--proc", "/proc", "--dev", "/dev"]
        if tmpfs_scratch:
            cmd += ["--perms", "1777", "--size", str(limits.scratch_mb << 20), "--tmpfs", tmpfs_scratch]
        for key, value in env.items():
            cmd += ["--setenv", key, value]
        cmd += ["--chdir", cwd, "--"]
        if os.geteuid() == 0:
            cmd += [shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={uid}",
                    "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]
        cmd += argv
        popen_env: dict[str, str] | None = {"PATH": "/usr/bin:/bin"}
        run_cwd = None
    else:
        cmd, popen_env, run_cwd = list(argv), dict(env), cwd

    def preexec() -> None:  # runs in the child between fork and exec
        _set_limits(limits, as_root_sandbox=(isolation.level == "rlimit"))
        if isolation.level == "rlimit" and os.geteuid() == 0 and _others_can_run(argv[0]):
            _try_unshare_net()
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)

    popen = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=popen_env,
        cwd=run_cwd,
        pass_fds=pass_fds,
        start_new_session=True,
        preexec_fn=preexec,
    )
    proc = SandboxProcess(popen, isolation, limits)
    proc.drain(popen.stdout)
    return proc


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


def _set_limits(limits: Limits, as_root_sandbox: bool) -> None:
    mb = 1 << 20
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # RLIMIT_NPROC counts every process of the uid. As root the sandbox gets a uid of its own
    # (setpriv/setresuid); as a normal user it shares the user's count, so leave room for theirs.
    base = 0 if os.geteuid() == 0 else _user_process_count()
    resource.setrlimit(resource.RLIMIT_NPROC, (base + limits.processes, base + limits.processes))
    del as_root_sandbox


def _user_process_count() -> int:
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


def _try_unshare_net() -> None:
    """A private network namespace for the rlimit level, when the kernel allows it (root)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.unshare(0x40000000)  # CLONE_NEWNET; failure leaves the network as it was
    except OSError:
        pass


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
