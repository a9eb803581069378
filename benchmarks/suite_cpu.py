"""Where the test suite's CPU goes, per test, sandboxes and background batches included.

    make suite-cpu                                   # the whole suite, then the report
    .venv/bin/python benchmarks/suite_cpu.py report suite-cpu.jsonl

As a pytest plugin (``-p suite_cpu`` with ``benchmarks/`` on ``PYTHONPATH``) it runs each test in
a control group of its own: everything the test starts -- subprocesses, sandboxes (bubblewrap's
PID namespace included), the session batches a fixture starts in the background -- stays in that
group and is counted there, even after the test ended and even for processes killed without
being waited for (which ``getrusage``'s children figures miss: the session batches' sandbox
workers are killed, not reaped, so earlier per-test figures could not attribute about a third of
the suite's CPU). At the end it writes one line per test: wall-clock seconds, CPU seconds used by
the time the test ended (``at_end``) and in all (``total``: the background it started included).

Needs write access to a cgroup hierarchy: cgroup v1's ``cpuacct`` controller
(``/sys/fs/cgroup/cpuacct``) or cgroup v2 (``cpu.stat``), i.e. root on most machines. Without
it the plugin says so and measures nothing (a measuring tool, never part of ``make test``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

OUT_ENV = "SUITE_CPU_OUT"
_CANDIDATES = (Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


def _hierarchy() -> Path | None:
    for base in _CANDIDATES:
        if (base / "cpuacct.usage").is_file() or (base / "cgroup.controllers").is_file():
            if os.access(base, os.W_OK):
                return base
    return None


def usage_ns(group: Path) -> int:
    """CPU nanoseconds used by everything that ran in ``group`` (v1 cpuacct or v2 cpu.stat)."""
    if (group / "cpuacct.usage").is_file():
        return int((group / "cpuacct.usage").read_text())
    for line in (group / "cpu.stat").read_text().splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1]) * 1000
    raise OSError(f"{group}: no CPU usage figure")


class SuiteCpu:
    """The plugin: one fresh group per run (``hw4-suite-<pid>``), one per test below it."""

    def __init__(self, base: Path):
        self.root = base / f"hw4-suite-{os.getpid()}"
        self.rows: list[dict] = []

    def _enter(self, name: str) -> Path:
        group = self.root / name
        group.mkdir(parents=True, exist_ok=False)  # a reused group would carry old usage
        (group / "cgroup.procs").write_text(str(os.getpid()))
        return group

    def pytest_sessionstart(self, session) -> None:
        self.idle = self._enter("between-tests")

    def wrap(self, item):
        group = self._enter(f"t{len(self.rows) + 1:04d}")
        started = time.monotonic()
        yield
        self.rows.append({"id": item.nodeid, "group": str(group), "wall": time.monotonic() - started,
                          "at_end": usage_ns(group)})
        (self.idle / "cgroup.procs").write_text(str(os.getpid()))

    def pytest_sessionfinish(self, session) -> None:
        out = Path(os.environ.get(OUT_ENV, "suite-cpu.jsonl"))
        with out.open("w") as fh:
            fh.write(json.dumps({"id": "<between tests>", "total": usage_ns(self.idle),
                                 "all": usage_ns(self.root)}) + "\n")
            for row in self.rows:
                row["total"] = usage_ns(Path(row["group"]))
                fh.write(json.dumps(row) + "\n")
                with contextlib.suppress(OSError):  # one a process still runs in stays
                    Path(row["group"]).rmdir()
        print(f"\nsuite_cpu: per-test CPU written to {out} (report: python benchmarks/suite_cpu.py report {out})")


def pytest_configure(config) -> None:
    import pytest

    base = _hierarchy()
    if base is None:
        print("suite_cpu: no writable cgroup hierarchy (needs root and cgroup v1 cpuacct or v2): "
              "nothing measured", file=sys.stderr)
        return
    plugin = SuiteCpu(base)

    class _Wrapper:
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_protocol(self, item, nextitem):
            yield from plugin.wrap(item)

        def pytest_sessionstart(self, session):
            plugin.pytest_sessionstart(session)

        def pytest_sessionfinish(self, session):
            plugin.pytest_sessionfinish(session)

    config.pluginmanager.register(_Wrapper(), "suite_cpu_groups")


def report(path: Path, top: int = 25) -> str:
    """Per file and per test, sorted by CPU seconds (the background a test started included)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    head, rows = rows[0], rows[1:]
    lines = [f"all {head['all'] / 1e9:.0f} CPU-s (between tests {head['total'] / 1e9:.0f}); "
             f"{len(rows)} tests, {sum(r['wall'] for r in rows):.0f} s wall-clock"]
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for r in rows:
        f = files[r["id"].split("::")[0]]
        f[0] += r["wall"]
        f[1] += r["total"] / 1e9
        f[2] += 1
    lines.append("\nper file: tests, wall-clock s, CPU s")
    for name, (wall, cpu, n) in sorted(files.items(), key=lambda kv: -kv[1][1])[:top]:
        lines.append(f"  {name:55s} {n:4d} {wall:8.1f} {cpu:8.1f}")
    lines.append("\nper test: wall-clock s, CPU s when it ended, CPU s in all (what it started included)")
    for r in sorted(rows, key=lambda r: -r["total"])[:top]:
        lines.append(f"  {r['id'][:100]:100s} {r['wall']:7.1f} {r['at_end'] / 1e9:7.1f} {r['total'] / 1e9:7.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "report":
        raise SystemExit("usage: suite_cpu.py report FILE.jsonl")
    print(report(Path(sys.argv[2])))
