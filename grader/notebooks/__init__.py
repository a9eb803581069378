"""Run a submission's notebooks end to end in the sandbox, and the checks on what they produced.

Modules:

``run``       (trusted) pick the notebooks, stage them, run them sandboxed, harvest the results,
              cache them by content hash (``HW4_NOTEBOOK_CACHE``).
``runner``    (in the sandbox) nbclient drives one kernel per notebook, cell by cell, with
              per-cell timeouts and a budget.
``harness``   (in the kernel) fast grading mode -- fixture data, no loader workers, CPU only,
              seeds -- and the event log of what the cells did.
``evidence``  (trusted) the harvested run read safely: cells, errors, events, claims, checkpoints.
``session``   (trusted) ``NotebookSession``: the runs, the handed-in notebooks, trusted evaluation.
``checks``    (trusted) the consistency checks the rubric tests call.
``execute``   command line: run a submission's notebooks and print or store their outputs.

Fast grading mode is the default. Full scale: ``--hw4-data-root`` (a real CIFAR-10 folder) and
``--hw4-checkpoint`` (the instructor's model) make the same run use them; give it a config with
larger ``notebook_*`` limits (``HW4_CONFIG``), and ``HW4_NOTEBOOK_GPU=1`` with
``--hw4-isolation rlimit`` for a GPU (bubblewrap's private /dev has no GPU device nodes).

What the checks grade (one file per item in ``tests/rubric/test_*_run.py``; all consistency checks,
see docs/ARCHITECTURE.md "Decisions"):

========  =================================================================================
lab1.b-f  for every parameter value a figure of the run shows that run's 5 weight trajectories
          and its log-loss (log10/ln of the loss, or the loss on a log axis; the reference's loss
          or the student's own ``loss`` along the trajectory)
lab2.a    the handed-in notebook's saved output shows the pretrained accuracy AND the re-run
          evaluates ``pretrained_model.pt`` to the reference's accuracy on the same data
lab2.c    ``net_after_finetune.pt`` keeps every zero of the student's own pruning; the sparsity
          check prints the saved model's real sparsities and its accuracy is the reference's
lab2.d    the iterative loop saved its model; its report is truthful (the schedule itself is a
          function test's; lost zeros are lab2.c's: both notes here)
lab2.e    the global schedule (q = 7e %, or the course's given 8e %) and the saved model; its report
          is truthful
lab3.b/d  the pretrained weights (b), a Lab 2 checkpoint's (d), were evaluated at every bit
          width; every printed accuracy is one the code computed
lab3.c    finetune ran at every bit width, the notebook evaluated the model finetune saved (and got
          finetune's best accuracy); every printed accuracy is one the code computed
========  =================================================================================

Notes, not failures: a ``.cuda()`` that ran on the CPU, cells that raised, sparsity targets missed
(70 % per layer; 70 % in total for global pruning), quantized accuracies that differ from the
reference quantizer's, full-scale accuracies outside the config's ranges. They reach the result
as warnings (the submission's ``problems``).

Trust: the event log is written by the harness inside the student's process, so it records an
honest run; what decides points is re-checked on the trusted side where it can be: checkpoints
are re-read and re-evaluated with the reference code, printed numbers are compared with them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from grader.errors import GraderError
from grader.notebooks.run import CACHE_ENV, RunOptions, execute_notebooks, select_notebooks
from grader.notebooks.session import NotebookSession, TrustedEvaluator
from reference.config import Config

__all__ = [
    "CACHE_ENV",
    "NotebookSession",
    "RunOptions",
    "TrustedEvaluator",
    "run_for_session",
    "run_notebooks",
    "select_notebooks",
]


def run_notebooks(root: Path, cfg: Config, options: RunOptions | None = None,
                  discovery=None) -> NotebookSession:
    """Run (or take from the cache) a submission's notebooks and load what they produced.

    Without a cache the harvest lives in a temporary folder: ``session.folder``; remove it when done.
    """
    options = options or RunOptions()
    if bool(options.data_root) != bool(options.checkpoint):
        raise GraderError("full-scale notebook runs need both a CIFAR-10 folder (--hw4-data-root) and the "
                          "instructor's checkpoint (--hw4-checkpoint)")
    # not `execute`: that name is the command-line submodule once it is imported
    folder = execute_notebooks(Path(root), cfg, options, discovery)
    return NotebookSession.load(folder, Path(root), cfg, options)


def run_for_session(config, submission, cfg: Config) -> NotebookSession:
    """The ``notebook_run`` fixture's body: run the notebooks of ``submission`` once per pytest
    session with the options of the command line, and report the run's notes as warnings."""
    options = RunOptions(
        data_root=config.getoption("--hw4-data-root"),
        checkpoint=config.getoption("--hw4-checkpoint"),
        isolation=config.getoption("--hw4-isolation"),
        slot=config.getoption("--hw4-slot"),
    )
    session = run_notebooks(submission.root, cfg, options, submission.discovery)
    if not options.cache_dir:
        config.add_cleanup(lambda: shutil.rmtree(session.folder, ignore_errors=True))
    # The submission's "problems" reach the result as warnings; notes added by the checks later
    # land there too, because this is the same list.
    session.notes = _SharedNotes(submission.discovery.problems, session.notes)
    return session


class _SharedNotes(list):
    """The session's notes, mirrored into the submission's warnings as they are added."""

    def __init__(self, sink: list, initial: list):
        super().__init__()
        self._sink = sink
        for note in initial:
            self.append(note)

    def append(self, note: str) -> None:  # type: ignore[override]
        super().append(note)
        if note not in self._sink:
            self._sink.append(note)
