"""A submission's notebook runs as the rubric tests see them, with trusted re-evaluation.

``NotebookSession`` holds the harvested runs (``hw4`` and ``lab1``), the notebooks as handed in
(with their saved outputs), the pretrained checkpoint the run used, a ``TrustedEvaluator`` that
measures any state dict with the reference ResNet-20 on the very data the run used, and
``notes``: remarks for the student that are not failures (a ``.cuda()`` that ran on the CPU, a
sparsity target missed, a cell that raised).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from grader.errors import GraderError
from grader.notebooks.evidence import (
    CellError,
    CellRecord,
    NotebookRun,
    load_state_dict,
    output_text,
    read_json,
)
from grader.notebooks.harness import fingerprint
from grader.notebooks.run import RunOptions
from reference.config import Config

__all__ = ["NotebookSession", "SubmittedCell", "TrustedEvaluator"]


@dataclass(frozen=True)
class SubmittedCell:
    """A code cell of a notebook as handed in: its source and the text of its saved outputs."""

    index: int
    source: str
    text: str


class TrustedEvaluator:
    """Accuracy of a ResNet-20 state dict under the *reference* code on the data the run used:
    the fixture's test split (fast mode) or CIFAR-10's test split under ``data_root``.

    ``accuracy(state, nbits, symmetric)`` builds ``reference.resnet20.ResNetCIFAR`` (reference FP
    layers, i.e. the reference quantizer for ``nbits``), evaluates it in eval mode and caches the
    result per (weights fingerprint, nbits, symmetric).
    """

    def __init__(self, cfg: Config, data_root: str | None = None):
        self.cfg, self.data_root = cfg, data_root
        self._cache: dict[tuple, float] = {}

    @cached_property
    def data(self):
        """The test images the run evaluated on: in fast mode the fixture's ``fast_test_size`` subset."""
        return self._test_split(self.cfg.data.fast_test_size)

    @cached_property
    def whole_data(self):
        """The whole test split: what a handed-in notebook's own run (never in fast mode) evaluated on."""
        return self._test_split(0)

    def _test_split(self, subset: int):
        import numpy as np
        import torch

        if self.data_root:
            import torchvision

            from grader.notebooks.run import _cifar_root

            ds = torchvision.datasets.CIFAR10(root=_cifar_root(self.data_root), train=False, download=False)
            x, y = np.asarray(ds.data), np.asarray(ds.targets)
        else:
            from reference.data import balanced_subset, load_arrays

            arrays = load_arrays(self.cfg.data.fixture)
            # the subset the run evaluated on (fast mode, reference.data.FixtureCIFAR10)
            keep = balanced_subset(arrays["y_test"], subset)
            x, y = arrays["x_test"][keep], arrays["y_test"][keep]
        # train_util's test transform: ToTensor (HWC uint8 -> CHW in [0, 1]) then Normalize
        images = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255.0)
        mean = torch.tensor(self.cfg.data.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.cfg.data.std).view(1, 3, 1, 1)
        return (images - mean) / std, torch.from_numpy(y.astype("int64"))

    @property
    def size(self) -> int:
        return len(self.data[1])

    @property
    def one_image(self) -> float:
        """The accuracy step of one test image: the tolerance between two evaluations of the same
        weights (batching changes float sums; a near-tie may flip one image)."""
        return 1.0 / max(self.size, 1)

    def accuracy(self, state: dict, nbits: int | None = None, symmetric: bool = False,
                 whole: bool = False) -> float:
        """``whole``: on the whole test split (:attr:`whole_data`), not the run's subset."""
        import torch

        from reference.resnet20 import ResNetCIFAR

        key = (fingerprint(state), nbits, bool(symmetric), whole)
        if key not in self._cache:
            net = ResNetCIFAR(num_layers=20, Nbits=nbits, symmetric=symmetric)
            net.load_state_dict(state, strict=True)
            net.eval()
            x, y = self.whole_data if whole else self.data
            correct = 0
            with torch.no_grad():
                for start in range(0, len(y), 250):
                    correct += int((net(x[start:start + 250]).argmax(1) == y[start:start + 250]).sum())
            self._cache[key] = correct / max(len(y), 1)
        return self._cache[key]


@dataclass
class NotebookSession:
    """What the rubric tests check: the runs, the handed-in notebooks, trusted evaluations."""

    cfg: Config
    options: RunOptions
    folder: Path
    root: Path
    selected: dict[str, str]
    info: dict
    runs: dict[str, NotebookRun] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, folder: Path, root: Path, cfg: Config, options: RunOptions) -> NotebookSession:
        info = read_json(folder / "session.json", 16 << 20)
        if not isinstance(info, dict):
            raise GraderError(f"the notebook run left no session record in {folder}")
        selected = {k: v for k, v in (info.get("selected") or {}).items() if isinstance(v, str)}
        session = cls(cfg, options, folder, Path(root), selected, info)
        for kind, file in selected.items():
            same = next((r for r in session.runs.values() if r.file == file), None)
            if same is not None:  # one notebook holds both labs: it ran once
                session.runs[kind] = same
            elif (folder / kind).is_dir():
                session.runs[kind] = NotebookRun.load(kind, file, folder / kind)
        session._mark_stopped()
        session._collect_notes()
        return session

    def _mark_stopped(self) -> None:
        """A run stopped from outside (time, disk) never recorded the cell it was in: say so."""
        stop = self.info.get("stop")
        for run in self.runs.values():
            if not stop or run.status != "started":
                continue
            run.status = "stopped"
            cell = next((c for c in run.cells if c.cell_type == "code" and c.status == "not run"), None)
            if cell is not None:
                cell.status = "stopped"
                cell.error = CellError("Stopped", stop, "", None)

    @property
    def hw4(self) -> NotebookRun | None:
        return self.runs.get("hw4")

    @property
    def lab1(self) -> NotebookRun | None:
        return self.runs.get("lab1")

    @property
    def mode(self) -> str:
        return self.options.mode

    @property
    def seconds(self) -> float:
        return float(self.info.get("seconds") or 0.0)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def check_harness(self, run: NotebookRun) -> None:
        """Runs that say nothing about the student are grader faults: the runner never started
        (and nobody stopped it), no kernel could start, or the harness did not install."""
        tail = "\n".join(str(self.info.get("output", "")).splitlines()[-30:])
        if run.status == "not run" and not self.info.get("stop"):
            raise GraderError(f"the notebook runner did not run {run.file} "
                              f"({self.info.get('exit')}):\n{tail}")
        if run.status == "kernel failed":
            raise GraderError(f"no kernel could be started for {run.file}: {run.error}\n{tail}")
        if run.ran and not run.installed:
            raise GraderError(f"the grading harness did not start in the kernel of {run.file}:\n{tail}")

    # ------------------------------------------------------------------ trusted side

    @cached_property
    def evaluator(self) -> TrustedEvaluator:
        return TrustedEvaluator(self.cfg, self.options.data_root)

    @cached_property
    def pretrained(self) -> dict:
        path = Path(self.options.checkpoint or self.cfg.data.checkpoint)
        state, problem = load_state_dict(path)
        if state is None:
            raise GraderError(f"the pretrained checkpoint {path} {problem}")
        return state

    @cached_property
    def pretrained_fingerprint(self) -> str:
        fp = fingerprint(self.pretrained)
        if fp is None:
            raise GraderError("the pretrained checkpoint has no tensors")
        return fp

    def submitted_cells(self, kind: str) -> list[SubmittedCell]:
        """The code cells of a notebook as handed in, with the text of its saved outputs."""
        file = self.selected.get(kind)
        if not file or not file.endswith(".ipynb"):
            return []
        nb = read_json(self.root / file, 32 << 20)
        cells = nb.get("cells") if isinstance(nb, dict) else None
        out = []
        for index, cell in enumerate(cells if isinstance(cells, list) else []):
            if isinstance(cell, dict) and cell.get("cell_type") == "code":
                src = cell.get("source")
                src = "".join(src) if isinstance(src, list) else str(src or "")
                text = output_text(cell.get("outputs", []), ("stdout", "stderr"))
                out.append(SubmittedCell(index, src, text))
        return out

    # ------------------------------------------------------------------ notes

    def _collect_notes(self) -> None:
        stop = self.info.get("stop")
        if stop:
            self.note(f"notebooks: {stop}")
        for run in {id(r): r for r in self.runs.values()}.values():
            if run.status in ("unreadable", "kernel failed"):
                self.note(f"{run.file} could not be run: {run.error}")
            elif run.status == "kernel died":
                self.note(f"{run.file}: the kernel died (out of memory?); later cells did not run")
            for cell in run.failed_cells():
                self.note(f"{run.describe_failure(cell)}")
            budget = [c for c in run.cells if c.status.startswith("not run: time budget")]
            if budget:
                self.note(f"{run.file}: {len(budget)} cells did not run: the notebooks' time budget "
                          f"({self.options.budget or self.cfg.grading.notebook_budget_s:g} s) was used up")
            self._note_portability(run)
            cap = run.events_of("batch_cap")
            if cap:
                e = cap[0]
                self.note(f"{run.file}: fast grading mode trains each epoch on at most {e.get('batches')} "
                          f"batch(es) of at most {e.get('batch_size')} images of the grader's small stand-in "
                          f"data, whatever the notebook's epochs and batch size, and evaluates on "
                          f"{self.evaluator.size} of its test images; the checks compare the run "
                          "with itself and with the reference on the same data (full scale: --hw4-data-root)")
            gpu = run.events_of("cuda")
            if gpu:  # one note for the notebook: a GPU notebook asks for it in almost every cell
                calls = sorted({str(e.get("call")) for e in gpu})
                cells = sorted({c.number for e in gpu if (c := run.cell_of(e.get("cell"))) is not None})
                where = f"cell{'s' if len(cells) > 1 else ''} {', '.join(map(str, cells))}"
                self.note(f"{run.file} asks for the GPU ({', '.join(calls)}) in {where}; the grader ran it "
                          "on the CPU. Write device = 'cuda' if torch.cuda.is_available() else 'cpu' so "
                          "it runs anywhere.")

    def _note_portability(self, run: NotebookRun) -> None:
        """One note for a notebook written for Colab or another machine: what the grader mapped."""
        events = run.events_of("portability")
        if not events:
            return

        def paths(what: str) -> list[str]:
            return list(dict.fromkeys(str(e.get("path")) for e in events if e.get("what") == what))

        parts = []
        if paths("mount"):
            parts.append("skipped the Google Drive mount")
        for what, verb in (("read", "read"), ("write", "wrote")):
            found = paths(what)
            if found:
                more = f" and {len(found) - 1} more" if len(found) > 1 else ""
                parts.append(f"{verb} '{found[0]}'{more} in the notebook's own folder")
        if paths("folder"):
            parts.append(f"created the folder(s) {', '.join(repr(p) for p in paths('folder')[:3])}")
        if paths("chdir"):
            parts.append(f"stayed in the notebook's folder instead of changing to '{paths('chdir')[0]}'")
        self.note(f"{run.file} was written for another machine (Colab or a lab machine): the grader "
                  + "; ".join(parts) + " (not a deduction)")

    def describe(self) -> str:
        parts = [f"mode={self.mode}", f"seconds={self.seconds:.1f}"]
        for run in self.runs.values():
            parts.append(f"{run.file}: {run.status} in {run.seconds:.1f} s")
        return ", ".join(parts)

    def to_json(self) -> str:
        return json.dumps({"info": {k: v for k, v in self.info.items() if k != "output"},
                           "notes": self.notes}, indent=1)


def cell_label(run: NotebookRun, cell: CellRecord | None) -> str:
    return run.where(cell) if cell else run.file
