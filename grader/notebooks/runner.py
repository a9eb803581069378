"""Execute notebooks with nbclient *inside the sandbox*: ``python -I runner.py JOB.json``.

The runner and the kernels it starts share one sandbox (same uid, same namespaces, same limits).
Kernels talk to the runner over ZMQ on unix sockets in the scratch folder (``transport="ipc"``):
TCP on loopback works inside bubblewrap's network namespace too, but ipc needs no network at all,
so it also works at the ``rlimit`` level, where Landlock forbids TCP and a fresh network namespace
has no loopback.

Per notebook of the job (``{"notebooks": [...], "scratch": ..., "harness": ...}``):

* the notebook is read (a ``.py`` file becomes one cell per ``# %%`` block, or one cell), its
  outputs cleared, and every code cell executed in order in a fresh kernel whose IPython startup
  file installs ``harness.py`` (seeds, fixture data, wrappers, event log);
* each cell runs under ``min(cell_timeout, what is left of the job's budget)`` (one budget for all
  the job's notebooks, which run one after the other); a cell that runs over is
  interrupted and recorded as timed out, and the next cells still run; a cell that raises is
  recorded and the next cells still run; after the kernel dies the rest are "not run";
* outputs are capped per cell and per notebook; after every cell the executed notebook and
  ``run.json`` (per-cell status and seconds) are rewritten, so a run killed from outside still
  leaves what it did.

Imports: the standard library, nbformat, nbclient, jupyter_client -- never the grader.
"""

from __future__ import annotations

import json
import os
import sys
import time

CELL_OUTPUT_CAP = 256 << 10  # bytes of outputs kept per cell
NOTEBOOK_OUTPUT_CAP = 8 << 20  # and per notebook
MAX_NOTEBOOK_BYTES = 32 << 20

STARTUP = """\
import importlib.util as _hw4_util
_hw4_spec = _hw4_util.spec_from_file_location("_hw4grade_harness", {harness!r})
_hw4_module = _hw4_util.module_from_spec(_hw4_spec)
_hw4_spec.loader.exec_module(_hw4_module)
_hw4_module.install(get_ipython(), {options!r})
del _hw4_util, _hw4_spec, _hw4_module
"""
KERNEL_CONFIG = """\
c.HistoryManager.enabled = False
c.IPKernelApp.extensions = []
"""


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as f:
        job = json.load(f)
    # One budget for the whole job: the notebooks run one after the other until it is spent.
    deadline = time.monotonic() + float(job["budget"])
    for spec in job["notebooks"]:
        run_notebook(spec, job, deadline)
    return 0


def load_notebook(path: str):
    """The notebook at ``path`` (nbformat v4), or a ``.py`` file as cells."""
    import nbformat

    size = os.path.getsize(path)
    if size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"{os.path.basename(path)} is {size >> 20} MB; notebooks over "
                         f"{MAX_NOTEBOOK_BYTES >> 20} MB are not run")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".py"):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(src) for src in split_percent_cells(text)]
        return nb
    nb = nbformat.reads(text, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def split_percent_cells(text: str) -> list[str]:
    """A script's code cells: blocks started by ``# %%`` lines (markdown blocks dropped); a
    script without markers is one cell."""
    cells: list[tuple[str, list[str]]] = [("code", [])]
    for line in text.splitlines():
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        else:
            cells[-1][1].append(line)
    return [src for kind, lines in cells if kind == "code" and (src := "\n".join(lines).strip("\n")).strip()]


def _client_class():
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """Keeps at most CELL_OUTPUT_CAP bytes of outputs per cell (and NOTEBOOK_OUTPUT_CAP in all):
        a cell that prints without end must not exhaust the runner's memory."""

        def output(self, outs, msg, display_id, cell_index):
            used = getattr(self, "_hw4_used", None)
            if used is None:
                used = self._hw4_used = {"total": 0}
            size = len(json.dumps(msg.get("content", {}), default=str))
            cell_used = used.get(cell_index, 0)
            if cell_used + size > CELL_OUTPUT_CAP or used["total"] + size > NOTEBOOK_OUTPUT_CAP:
                if not used.get(("cut", cell_index)):
                    used[("cut", cell_index)] = True
                    import nbformat

                    outs.append(nbformat.v4.new_output(
                        "stream", name="stderr",
                        text="\n[hw4grade: further output of this cell was dropped]\n"))
                return None
            used[cell_index] = cell_used + size
            used["total"] += size
            return super().output(outs, msg, display_id, cell_index)

        async def _async_handle_timeout(self, timeout, cell=None):
            self.hw4_timed_out = True  # the interrupted cell shows KeyboardInterrupt; say why
            return await super()._async_handle_timeout(timeout, cell)

    return CappedClient


def run_notebook(spec: dict, job: dict, deadline: float) -> None:
    import nbformat

    meta, work = spec["meta"], spec["work"]
    started = time.monotonic()
    record: dict = {"file": spec["file"], "status": "started", "cells": [], "seconds": 0.0, "error": None}
    executed_path = os.path.join(meta, "executed.ipynb")

    def save(final: bool = False) -> None:
        record["seconds"] = round(time.monotonic() - started, 3)
        if final and record["status"] == "started":
            record["status"] = "finished"
        tmp = os.path.join(meta, "run.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(meta, "run.json"))

    try:
        nb = load_notebook(os.path.join(work, spec["file"]))
    except Exception as exc:
        record["status"], record["error"] = "unreadable", f"{type(exc).__name__}: {exc}"[:2000]
        save(final=True)
        return
    options = dict(spec["options"], events=os.path.join(meta, "events.jsonl"),
                   masks=os.path.join(meta, "masks"))
    os.makedirs(options["masks"], exist_ok=True)
    ipython_dir = os.path.join(job["scratch"], f"ipython-{spec['kind']}")
    startup = os.path.join(ipython_dir, "profile_default", "startup")
    os.makedirs(startup, exist_ok=True)
    with open(os.path.join(startup, "00-hw4grade.py"), "w", encoding="utf-8") as f:
        f.write(STARTUP.format(harness=job["harness"], options=options))
    config = os.path.join(ipython_dir, "profile_default", "ipython_kernel_config.py")
    with open(config, "w", encoding="utf-8") as f:
        f.write(KERNEL_CONFIG)
    socket_dir = os.path.join(job["scratch"], f"ipc-{spec['kind']}")
    os.makedirs(socket_dir, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel's inline backend
    env["IPYTHONDIR"] = ipython_dir

    from jupyter_client.manager import AsyncKernelManager
    from nbclient.exceptions import DeadKernelError

    # The async manager: with a blocking one nbclient's per-cell timeout never fires.
    km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(socket_dir, "k"))
    client = _client_class()(
        nb, km=km, allow_errors=True, interrupt_on_timeout=True, record_timing=True,
        iopub_timeout=10, startup_timeout=120, shutdown_kernel="immediate",
        resources={"metadata": {"path": spec.get("home", work)}},  # the notebook's own folder
    )
    cell_timeout = float(job["cell_timeout"])
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    record["cells"] = [{"index": i, "status": "not run", "seconds": 0.0} for i in code_cells]
    save()
    ordinal = 0  # the harness counts the cells it sees run the same way
    try:
        # cleanup_kc: shut the kernel down afterwards (with a manager passed in, nbclient would not)
        with client.setup_kernel(env=env, cleanup_kc=True):
            for n, index in enumerate(code_cells):
                cell, entry = nb.cells[index], record["cells"][n]
                left = deadline - time.monotonic()
                if left < 1:
                    entry["status"] = "not run: time budget used up"
                    continue
                client.timeout = int(max(1, min(cell_timeout, left)))
                client.error_on_timeout = {
                    "ename": "CellTimeoutError",
                    "evalue": f"the cell did not finish within {client.timeout} s and was interrupted "
                              "(the per-cell limit or the notebooks' time budget)",
                    "traceback": [],
                }
                t0 = time.monotonic()
                ordinal += 1
                entry["ordinal"] = ordinal
                client.hw4_timed_out = False
                try:
                    client.execute_cell(cell, index)
                except DeadKernelError:
                    entry["status"] = "kernel died"
                    entry["seconds"] = round(time.monotonic() - t0, 3)
                    record["status"] = "kernel died"
                    for later in record["cells"][n + 1:]:
                        later["status"] = "not run: the kernel died in an earlier cell"
                    break
                entry["seconds"] = round(time.monotonic() - t0, 3)
                entry["execution_count"] = cell.get("execution_count")
                if client.hw4_timed_out:
                    entry["status"] = "timeout"
                    cell.outputs.append(nbformat.v4.new_output("error", **client.error_on_timeout))
                else:
                    errors = [o for o in cell.outputs if o.get("output_type") == "error"]
                    entry["status"] = "error" if errors else "ok"
                nbformat.write(nb, executed_path)
                save()
    except Exception as exc:
        if record["status"] == "started":
            record["status"], record["error"] = "kernel failed", f"{type(exc).__name__}: {exc}"[:2000]
    nbformat.write(nb, executed_path)
    save(final=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
