"""The checks on executed notebooks that ``tests/rubric/test_*_run.py`` grade with.

They are **consistency checks** (docs/ARCHITECTURE.md): a wrong ``prune_by_percentage`` already
loses lab2.b's function points, so a notebook check asks whether the run did what its own code
says -- the checkpoint exists, the zero pattern the student's own pruning made survived
finetuning, the numbers printed are the numbers the code computed, the accuracies reported are
what the reference code measures on the same weights and data -- never whether the student's
pruning or quantizer is right. Absolute targets (70 % per layer, 70 % in total) become notes.

Every check returns an ``Outcome`` (a fraction of the check's points and a message that names the
cell and what went wrong); ``Outcome.check(credit)`` turns it into a pass, or a failure with
partial credit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from grader.errors import GraderError
from grader.notebooks.evidence import Claim, NotebookRun, accuracy_claims, sparsity_claims
from grader.notebooks.harness import fingerprint
from grader.notebooks.session import NotebookSession

__all__ = [
    "LAB1_PARTS",
    "Outcome",
    "bit_width_evaluations",
    "iterative_checkpoint",
    "lab1_figures",
    "lab2a_pretrained_accuracy",
    "lab3c_evaluated",
    "lab3c_finetuned",
    "pattern_kept",
    "printed_accuracies",
    "schedule",
    "sparsity_report",
]

#: Lab 1 part -> (runner, reference method, the runner's parameter name)
LAB1_PARTS = {
    "b": ("run_gd", "gd", None),
    "c": ("run_projected_gd", "projected", "k"),
    "d": ("run_l1_gd", "l1", "lam"),
    "e": ("run_proximal_gd", "proximal", "threshold"),
    "f": ("run_trimmed_l1", "trimmed", "threshold"),
}
CHECKPOINTS = {"lab2.c": "finetune", "lab2.d": "iterative", "lab2.e": "global_iterative"}


@dataclass
class Outcome:
    """The result of one check: ``fraction`` of its points and why it is not 1."""

    fraction: float
    problems: list[str] = field(default_factory=list)

    @classmethod
    def fail(cls, message: str) -> Outcome:
        return cls(0.0, [message])

    def check(self, credit=None) -> None:
        """Pass, or fail with the problems as the message (and partial credit when > 0)."""
        if self.fraction >= 1.0 and not self.problems:
            return
        if credit is not None and 0.0 < self.fraction < 1.0:
            credit.set(self.fraction)
        raise AssertionError("\n".join(self.problems) or "the check failed")


def _hw4(session: NotebookSession) -> NotebookRun | Outcome:
    run = session.hw4
    if run is None:
        return Outcome.fail("no Lab 2/3 notebook was found in your submission (a .ipynb that defines "
                            "prune_by_percentage or loads pretrained_model.pt)")
    session.check_harness(run)
    if run.status == "unreadable":
        return Outcome.fail(f"{run.file} could not be run: {run.error}")
    return run


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def _ordered(run: NotebookRun, kinds: tuple[str, ...], cell: int | None = None) -> list[tuple[int, dict]]:
    """(position in the log, event) of the given kinds, optionally in one cell."""
    return [(i, e) for i, e in enumerate(run.events)
            if e.get("ev") in kinds and (cell is None or e.get("cell") == cell)]


# ----------------------------------------------------------------------------- Lab 1


def lab1_figures(session: NotebookSession, part: str) -> Outcome:
    """Lab 1 part ``part``: for every parameter of the term, a figure made in the run shows the
    log-loss and the five weight trajectories of that run of the student's own runner."""
    runner, method, param = LAB1_PARTS[part]
    run = session.lab1
    if run is None:
        return Outcome.fail("no Lab 1 notebook or lab1.py was found in your submission")
    session.check_harness(run)
    if run.status == "unreadable":
        return Outcome.fail(f"{run.file} could not be run: {run.error}")
    values = [v for v in session.cfg.lab1.params(method)]
    calls = [e for e in run.events_of("lab1_run") if e.get("fn") == runner]
    if not calls:
        return Outcome.fail(f"{runner} was never called while {run.file} ran: {run.failure_near(runner)}")
    figures = run.events_of("figure")
    X, y = np.array(session.cfg.lab1.X), np.array(session.cfg.lab1.y)
    missing = []
    for value in values:
        label = f"{runner}" + (f" with {param} = {value:g}" if param else "")
        mine = [c for c in calls if param is None or _same(c.get("params", {}).get(param), value)]
        if not mine:
            missing.append(f"{label}: never called")
            continue
        if any(c.get("raised") for c in mine) and not any(c.get("trajectory") for c in mine):
            missing.append(f"{label}: raised {mine[-1]['raised']}")
            continue
        shown = [c for c in mine if c.get("trajectory") and _figure_shows(figures, c, X, y)]
        if not shown:
            missing.append(f"{label}: no figure shows its log-loss curve and its 5 weight trajectories")
    if not missing:
        return Outcome(1.0)
    done = len(values) - len(missing)
    return Outcome(done / len(values), [f"{run.file}, Lab 1 ({part}): figures missing for "
                                        f"{len(missing)} of {len(values)} runs:", *missing])


def _same(a, b) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def _figure_shows(figures: list[dict], call: dict, X: np.ndarray, y: np.ndarray) -> bool:
    """Some figure plots every weight column of the call's trajectory, and some figure plots a
    loss curve of it (log10/ln of the loss, or the loss on a log-scaled axis)."""
    traj = np.asarray(call["trajectory"], dtype=float)
    if traj.ndim != 2 or traj.shape[0] < 2:
        return False
    lines = [(_numbers(line.get("y", [])), ax.get("yscale", "linear"))
             for fig in figures for ax in fig.get("axes", []) for line in ax.get("lines", [])]
    weight_ok = all(any(_follows(line, traj[:, j]) for line, _ in lines) for j in range(traj.shape[1]))
    if not weight_ok:
        return False
    losses = [_reference_loss(traj, X, y)]
    if call.get("student_loss"):
        losses.append(_numbers(call["student_loss"]))
    for line, scale in lines:
        for loss in losses:
            # A plot clips the log of a loss that reached 0: compare where the loss is above 1e-8.
            valid = loss > 1e-8
            if scale == "log" and _follows(line, loss, valid):
                return True
            if any(_follows(line, f(np.maximum(loss, 1e-300)), valid) for f in (np.log10, np.log)):
                return True
    return False


def _numbers(values) -> np.ndarray:
    """A logged list as floats (the log writes NaN/inf as strings: they become NaN)."""
    return np.asarray([v if isinstance(v, int | float) else np.nan for v in values], dtype=float)


def _reference_loss(traj: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    if traj.shape[1] != X.shape[1]:
        return np.full(len(traj), np.nan)
    return np.sum((traj @ X.T - y) ** 2, axis=1)


def _follows(line: np.ndarray, seq: np.ndarray, valid: np.ndarray | None = None) -> bool:
    """``line`` plots ``seq``, from its first or its second entry (with or without W0; the loss
    logged before or after each update), comparing only where ``valid``."""
    n = len(line)
    if n < 2 or len(seq) < 2:
        return False
    for offset in (0, 1):
        if offset + n > len(seq) or n < len(seq) - 2:
            continue
        want = seq[offset:offset + n]
        keep = np.isfinite(want) & np.isfinite(line)
        if valid is not None:
            keep &= valid[offset:offset + n]
        if keep.sum() < 2:
            continue
        # the plotted values are the trajectory's own numbers: float32 rounding at most
        if np.allclose(line[keep], want[keep], rtol=1e-5, atol=1e-8):
            return True
    return False


# ----------------------------------------------------------------------------- Lab 2 (a)


def lab2a_pretrained_accuracy(session: NotebookSession) -> Outcome:
    """The handed-in notebook shows the pretrained model's accuracy in its saved outputs, and the
    re-run evaluated the pretrained weights with ``test`` and got the reference's accuracy."""
    run = _hw4(session)
    if isinstance(run, Outcome):
        return run
    reference = session.evaluator.accuracy(session.pretrained)
    tol = session.evaluator.one_image
    tests = [e for e in run.events_of("test")
             if e.get("fingerprint") == session.pretrained_fingerprint and e.get("nbits") is None]
    if not tests:
        return Outcome.fail("the re-run never evaluated the pretrained model with test(net): "
                            + run.failure_near("pretrained_model.pt"))
    event = tests[0]
    cell = run.cell_of(event.get("cell"))
    problems = []
    if not isinstance(event.get("accuracy"), float) or abs(event["accuracy"] - reference) > tol:
        problems.append(f"the re-run of {run.where(cell) if cell else run.file} reported accuracy "
                        f"{event.get('accuracy')}; the reference evaluation of pretrained_model.pt on the "
                        f"same data gives {_fmt(reference)}")
    submitted = {c.index: c for c in session.submitted_cells("hw4")}
    saved = submitted.get(cell.index) if cell else None
    claims = [c for line in (saved.text.splitlines() if saved else []) for c in accuracy_claims(line)]
    lo, hi = session.cfg.data.full_scale.get("pretrained_accuracy", (1.0, 0.0))

    def handed_in() -> float:
        # The saved output is the student's own run: CIFAR-10, or the grader's data whole (never the
        # fast mode's subset of the test split). Evaluated only if a claim is outside the CIFAR-10
        # range (the evaluator caches it).
        return session.evaluator.accuracy(session.pretrained, whole=True)

    ok = [c for c in claims if lo - c.tolerance <= c.value <= hi + c.tolerance or c.agrees(handed_in())]
    where = f"cell {cell.number}" if cell else "the cell that evaluates the pretrained model"
    if not claims:
        problems.append(f"{run.file} was handed in without the output of {where} (the pretrained "
                        "model's test accuracy): run the notebook and save it with its outputs")
    elif not ok:
        problems.append(f"the saved output of {where} shows accuracy {claims[0].value:g}, which is not "
                        f"the pretrained model's ({_fmt(handed_in())} on the grader's data, "
                        f"{lo:g}-{hi:g} on CIFAR-10)")
    return Outcome(0.0 if problems else 1.0, problems)


# ----------------------------------------------------------------------------- Lab 2 (c, d, e)


def _checkpoint(session: NotebookSession, run: NotebookRun, item: str):
    """``(name, state, fingerprint)`` of an item's checkpoint, or an Outcome saying why not."""
    name = session.cfg.lab2.checkpoints[CHECKPOINTS[item]]
    state, problem = run.checkpoint(name)
    saves = [e for e in run.events_of("save") if e.get("file") == name]
    if state is None and problem == "was not written" and saves:
        return Outcome.fail(f"{name} was saved by {_where(run, saves[-1].get('cell'))}, but not in the "
                            "notebook's own folder: save it next to the notebook (a relative path)")
    if state is None:
        why = run.failure_near(name) if problem == "was not written" else ""
        return Outcome.fail(f"{name} {problem}" + (f": {why}" if why else ""))
    if not saves:
        return Outcome.fail(f"{name} was not written with torch.save while {run.file} ran")
    fp = fingerprint(state)
    if saves[-1].get("fingerprint") != fp:
        return Outcome.fail(f"{name} on disk is not the model the notebook saved last "
                            f"({_where(run, saves[-1].get('cell'))})")
    return name, state, fp


def _where(run: NotebookRun, ordinal) -> str:
    cell = run.cell_of(ordinal)
    return run.where(cell) if cell else run.file


def _training_cell(run: NotebookRun, name: str) -> int | None:
    """The execution count of the cell that last saved ``name``."""
    saves = [e for e in run.events_of("save") if e.get("file") == name]
    return saves[-1].get("cell") if saves else None


def _zeros_kept(state: dict, mask: dict) -> tuple[int, int, str | None]:
    """(zeros of the mask, of them non-zero in the state, the worst layer)."""
    total, lost, worst, worst_lost = 0, 0, None, 0
    for layer, m in mask.items():
        w = state.get(f"{layer}.weight")
        if w is None or w.shape != m.shape:
            continue
        n_lost = int((w[m] != 0).sum())
        total += int(m.sum())
        lost += n_lost
        if n_lost > worst_lost:
            worst, worst_lost = layer, n_lost
    return total, lost, worst


def pattern_kept(session: NotebookSession, item: str) -> Outcome:
    """lab2.c: the checkpoint keeps every zero of the pattern its masked finetuning started from,
    i.e. of the student's own pruning, whatever that pruned."""
    run = _hw4(session)
    if isinstance(run, Outcome):
        return run
    got = _checkpoint(session, run, item)
    if isinstance(got, Outcome):
        return got
    name, state, _ = got
    kept = _pattern_after_last_pruning(session, run, item, name, state)
    _note_sparsity(session, name, state, item)
    return kept


def iterative_checkpoint(session: NotebookSession, item: str) -> Outcome:
    """lab2.d/e: the checkpoint was saved by the cell that pruned step by step and finetuned.

    Whether it kept the last step's zeros depends on finetune_after_prune, which lab2.c grades:
    here that is a note, not a failure (one bug costs points once)."""
    run = _hw4(session)
    if isinstance(run, Outcome):
        return run
    got = _checkpoint(session, run, item)
    if isinstance(got, Outcome):
        return got
    name, state, _ = got
    cell = _training_cell(run, name)
    prune_kinds = ("global_prune",) if item == "lab2.e" else ("prune",)
    last_save = max(i for i, e in enumerate(run.events) if e.get("ev") == "save" and e.get("file") == name)
    before = [e for i, e in _ordered(run, (*prune_kinds, "finetune_after_prune"), cell) if i < last_save]
    fn = "global_prune_by_percentage" if item == "lab2.e" else "prune_by_percentage"
    pruned = any(e["ev"] in prune_kinds for e in before)
    if not pruned or not any(e["ev"] == "finetune_after_prune" for e in before):
        return Outcome.fail(f"{_where(run, cell)} saved {name} without calling both {fn} and "
                            "finetune_after_prune before: it is not the model of the iterative pruning loop")
    kept = _pattern_after_last_pruning(session, run, item, name, state)
    if kept.problems:
        session.note(f"{item}: {kept.problems[0]} (finetune_after_prune is graded in Lab 2 (c))")
    _note_sparsity(session, name, state, item)
    return Outcome(1.0)


def _pattern_after_last_pruning(session: NotebookSession, run: NotebookRun, item: str, name: str,
                                state: dict) -> Outcome:
    """Does the saved model keep the zeros present at the first masked finetuning epoch after
    the last pruning call of the cell that saved it?"""
    cell = _training_cell(run, name)
    prune_kinds = ("global_prune",) if item == "lab2.e" else ("prune",)
    events = _ordered(run, (*prune_kinds, "finetune_after_prune"), cell)
    last_save = max(i for i, e in enumerate(run.events) if e.get("ev") == "save" and e.get("file") == name)
    last_prune = max((i for i, e in events if e["ev"] in prune_kinds), default=-1)
    masked = [e for i, e in events if e["ev"] == "finetune_after_prune" and e.get("prune")
              and last_prune < i < last_save and isinstance(e.get("mask"), int)]
    where = _where(run, cell)
    if not masked:
        return Outcome.fail(f"{where} saved {name} without finetuning with the zero pattern fixed after "
                            "its last pruning step (finetune_after_prune(..., prune=True))")
    mask = run.mask(masked[0]["mask"])
    if mask is None:
        raise GraderError(f"the harness's record of the zero pattern (mask {masked[0]['mask']}) is missing")
    zeros, lost, worst = _zeros_kept(state, mask)
    if lost:
        return Outcome.fail(f"{name}: {lost} of the {zeros} weights that were zero when finetuning started "
                            f"(after the pruning in {where}) are non-zero in the saved model "
                            f"(most in layer {worst}): the pruned weights must stay exactly 0")
    return Outcome(1.0)


def _note_sparsity(session: NotebookSession, name: str, state: dict, item: str) -> None:
    """Absolute targets are feedback, not points: say when a checkpoint misses them."""
    report = _sparsity_of(state)
    target = session.cfg.lab2.sparsity_target
    if item == "lab2.e":
        if report["total"] < target - 0.01:
            session.note(f"{name}: {report['total']:.1%} of the prunable weights are zero in total; "
                         f"global pruning should reach {target:.0%} in total")
        return
    low = {k: v for k, v in report["layers"].items() if v < target - 0.01}
    if low:
        layer, value = min(low.items(), key=lambda kv: kv[1])
        session.note(f"{name}: {len(low)} layers are less than {target:.0%} sparse "
                     f"(e.g. {layer}: {value:.1%}); the assignment asks for {target:.0%} per layer")


def _sparsity_of(state: dict) -> dict:
    from reference.lab2 import prunable_layers
    from reference.resnet20 import ResNetCIFAR

    layers, zeros, total = {}, 0, 0
    for name, _ in prunable_layers(ResNetCIFAR(num_layers=20)):
        w = state[f"{name}.weight"]
        z, n = int((w == 0).sum()), w.numel()
        layers[name] = z / n
        zeros, total = zeros + z, total + n
    return {"layers": layers, "total": zeros / total}


def schedule(session: NotebookSession, item: str) -> Outcome:
    """Iterative pruning (lab2.d per layer, lab2.e global): before epoch e = 1..E the notebook
    pruned to e x step percent (every prunable layer once, for lab2.d), then trained at least one
    more epoch with the pattern fixed. This grades the notebook's own loop, not the pruning."""
    run = _hw4(session)
    if isinstance(run, Outcome):
        return run
    c2 = session.cfg.lab2
    name = c2.checkpoints[CHECKPOINTS[item]]
    glob = item == "lab2.e"
    cell = _training_cell(run, name)
    if cell is None:
        return Outcome.fail(f"{name} was never saved, so the iterative pruning loop did not finish: "
                            + run.failure_near(name))
    prune_kind = "global_prune" if glob else "prune"
    layers = len(_sparsity_of(session.pretrained)["layers"])
    epochs: list[list[dict]] = [[]]
    fixed = []
    for _, e in _ordered(run, (prune_kind, "finetune_after_prune"), cell):
        if e["ev"] == prune_kind:
            epochs[-1].append(e)
        else:
            fixed.append(bool(e.get("prune")) and not epochs[-1])
            epochs.append([])
    epochs = epochs[:-1]  # the pruning calls before each finetuning epoch
    where = _where(run, cell)
    E = c2.iterative_prune_epochs
    if len(epochs) < E:
        return Outcome.fail(f"{where} ran {len(epochs)} finetuning epochs; iterative pruning needs "
                            f"{E} pruning epochs and then epochs with the pattern fixed")
    # Global pruning may follow either the term's step or the one the course's given cell says
    # (2023F: `q=(epoch+1)*8` in a 70 % term); the step that fits the run best is graded.
    steps = c2.global_iterative_steps if glob else (c2.iterative_step,)
    step, wrong = min(((st, _schedule_errors(epochs, E, st, 1 if glob else layers, glob)) for st in steps),
                      key=lambda sw: len(sw[1]))
    problems = list(wrong[:4]) + ([f"... and {len(wrong) - 4} more epochs"] if len(wrong) > 4 else [])
    later = fixed[E:]
    if not any(later):
        problems.append(f"{where}: no epoch after the last pruning step trained with the pattern fixed "
                        "(finetune_after_prune(..., prune=True) without pruning)")
    if wrong:
        allowed = " or ".join(f"{st:g}%" for st in steps)
        problems.insert(0, f"{where}: the pruning schedule is not {allowed} more before each of "
                           f"the first {E} epochs (q is a percent: {step:g}, "
                           f"{2 * step:g}, ..., {E * step:g}):")
    fraction = (E - len(wrong)) / E * (1.0 if any(later) else 0.5)
    return Outcome(fraction if problems else 1.0, problems)


def _schedule_errors(epochs: list[list[dict]], E: int, step: float, count: int, glob: bool) -> list[str]:
    """The pruning epochs 1..E whose calls are not ``count`` calls with ``q = epoch * step``."""
    wrong = []
    for epoch in range(1, E + 1):
        want = epoch * step
        qs = [p.get("q") for p in epochs[epoch - 1]]
        if len(qs) != count or not all(_same(q, want) for q in qs):
            shown = sorted({q for q in qs if q is not None})
            got = "nothing" if not qs else f"q = {', '.join(f'{q:g}' for q in shown)} ({len(qs)} calls)"
            what = "global_prune_by_percentage" if glob else "every layer pruned"
            wrong.append(f"before epoch {epoch}: expected {what} with q = {want:g}, got {got}")
    return wrong


def sparsity_report(session: NotebookSession, item: str) -> Outcome:
    """A cell loads the item's checkpoint, prints its sparsity (per layer and in total) and its
    test accuracy; every printed sparsity is the checkpoint's real one, and the accuracy is what
    the reference code measures on those weights."""
    run = _hw4(session)
    if isinstance(run, Outcome):
        return run
    got = _checkpoint(session, run, item)
    if isinstance(got, Outcome):
        return got
    name, state, fp = got
    truth = _sparsity_of(state)
    loads = {e.get("cell") for e in run.events_of("load") if e.get("file") == name}
    cells = [c for c in run.cells if c.ordinal in loads]
    reports = []
    for cell in cells:
        names = list(truth["layers"])
        claims = [cl for line in run.student_lines(cell) for cl in sparsity_claims(line, names)]
        if claims:
            reports.append((cell, claims))
    problems: list[str] = []
    half = 0.0
    if not reports:
        problems.append(f"no cell loads {name} and prints its sparsity (\"Sparsity of <layer>: ...\" and "
                        f"the total): {run.failure_near(name, 'sparsity', 'Sparsity')}")
    else:
        wrong = [(cell, cl, _claim_truth(cl, truth)) for cell, claims in reports for cl in claims
                 if not _claim_agrees(cl, truth)]
        if wrong:
            cell, claim, real = wrong[0]
            problems.append(f"{run.where(cell)} prints a sparsity that {name} does not have: "
                            f"\"{claim.line}\" but the saved model has {real} "
                            f"({len(wrong)} such lines)")
        else:
            half += 0.5
    tests = [e for e in run.events_of("test") if e.get("fingerprint") == fp and e.get("nbits") is None]
    if not tests:
        problems.append(f"no cell evaluates {name} with test(net) after loading it")
    else:
        reference = session.evaluator.accuracy(state)
        bad = [e for e in tests if not isinstance(e.get("accuracy"), float)
               or abs(e["accuracy"] - reference) > session.evaluator.one_image]
        lies = _false_accuracy_claims(run, {e.get("cell") for e in tests})
        if bad:
            problems.append(f"the notebook reported accuracy {bad[0].get('accuracy')} for {name}; the "
                            f"reference evaluation of that checkpoint on the same data gives "
                            f"{_fmt(reference)}")
        elif lies:
            problems.append(lies[0])
        else:
            half += 0.5
        _note_full_scale(session, item, reference)
    return Outcome(1.0 if not problems else half, problems)


def _claim_truth(claim: Claim, truth: dict) -> str:
    if claim.layer == "total":
        return f"{truth['total']:.4f} in total"
    if claim.layer in truth["layers"]:
        return f"{truth['layers'][claim.layer]:.4f} in {claim.layer}"
    values = sorted(truth["layers"].values())
    return f"layer sparsities {values[0]:.4f}-{values[-1]:.4f}, {truth['total']:.4f} in total"


def _claim_agrees(claim: Claim, truth: dict) -> bool:
    if claim.layer == "total":
        return claim.agrees(truth["total"])
    if claim.layer in truth["layers"]:
        return claim.agrees(truth["layers"][claim.layer])
    return any(claim.agrees(v) for v in [truth["total"], *truth["layers"].values()])


def _note_full_scale(session: NotebookSession, item: str, accuracy: float) -> None:
    key = {"lab2.c": "pruned_finetuned_accuracy", "lab2.d": "iterative_pruned_accuracy",
           "lab2.e": "global_pruned_accuracy"}.get(item)
    if session.mode != "full" or key not in session.cfg.data.full_scale:
        return
    lo, hi = session.cfg.data.full_scale[key]
    if not lo <= accuracy <= hi:
        session.note(f"{item}: test accuracy {accuracy:.4f} is outside the range expected at full scale "
                     f"({lo:g}-{hi:g})")


# ----------------------------------------------------------------------------- printed accuracies


def _evaluations(run: NotebookRun, cell: int | None) -> list[float]:
    """Accuracies the code computed in one cell: test(), finetune's epochs and its best."""
    out = []
    for e in run.events_of("test", "evaluate", "finetune_end"):
        value = e.get("best") if e.get("ev") == "finetune_end" else e.get("accuracy")
        if e.get("cell") == cell and isinstance(value, float):
            out.append(value)
    return out


def _false_accuracy_claims(run: NotebookRun, cells: set) -> list[str]:
    """Accuracy lines the student printed in these cells that no evaluation run in the same cell
    (or, for a cell that evaluated nothing, in an earlier cell) produced."""
    out = []
    for cell in run.cells:
        if cell.ordinal not in cells:
            continue
        here = _evaluations(run, cell.ordinal)
        pool = here or [a for c in run.cells if c.ordinal and cell.ordinal and c.ordinal < cell.ordinal
                        for a in _evaluations(run, c.ordinal)]
        for line in run.student_lines(cell):
            for claim in accuracy_claims(line):
                if not any(claim.agrees(a) for a in pool):
                    values = ", ".join(_fmt(a) for a in here[:6])
                    gave = f" (the evaluations in that cell gave {values})" if here else ""
                    out.append(f"{run.where(cell)} prints \"{claim.line}\", but no evaluation the code ran "
                               f"gave that accuracy{gave}")
    return out


def printed_accuracies(session: NotebookSession, item: str) -> Outcome:
    """Every accuracy the notebook printed in the item's cells is one its code computed (a
    ``test``/``finetune`` evaluation in the same cell)."""
    run = _hw4(session)
    if isinstance(run, Outcome):
        return run
    cells = _item_cells(session, run, item)
    if not cells:
        return Outcome.fail(f"no cell of {run.file} ran the evaluations of {item}: "
                            + run.failure_near("Nbits", "finetune("))
    lies = _false_accuracy_claims(run, cells)
    if lies:
        return Outcome(0.0, lies[:3] + ([f"... {len(lies) - 3} more"] if len(lies) > 3 else []))
    return Outcome(1.0)


def _item_cells(session: NotebookSession, run: NotebookRun, item: str) -> set:
    """The cells (execution counts) whose evaluations belong to a Lab 3 item."""
    c3 = session.cfg.lab3
    if item == "lab3.b":
        return {e.get("cell") for e in _bit_tests(session, run, session.pretrained_fingerprint, c3.bits)}
    if item == "lab3.c":
        return {e.get("cell") for e in run.events_of("finetune_start") if e.get("nbits") in c3.finetune_bits}
    if item == "lab3.d":
        return {e.get("cell") for _, state in _pruned_models(session, run)
                for e in _bit_tests(session, run, fingerprint(state), c3.pruned_bits, outside_finetuning=False)}
    raise ValueError(f"_item_cells: no cells for {item}")


def _bit_tests(session: NotebookSession, run: NotebookRun, fp: str | None, bits,
               outside_finetuning: bool = True) -> list[dict]:
    """Quantized test() evaluations of the weights ``fp`` at ``bits``; with ``outside_finetuning``
    not in Lab 3 (c)'s cells: those evaluate the pretrained model at 4/3/2 bits too (before
    finetuning), which must not count as the Lab 3 (b) sweep."""
    finetuning = {e.get("cell") for e in run.events_of("finetune_start")} if outside_finetuning else set()
    return [e for e in run.events_of("test") if e.get("fingerprint") == fp and e.get("nbits") in bits
            and not e.get("symmetric") and e.get("cell") not in finetuning]


def _pruned_models(session: NotebookSession, run: NotebookRun) -> list[tuple[str, dict]]:
    """The pruned models Lab 3 (d) may quantize: every Lab 2 checkpoint the run wrote (our
    notebook uses net_after_finetune.pt, the course's cell net_after_global_iterative_prune.pt)."""
    out = []
    for name in session.cfg.lab2.checkpoints.values():
        state, _ = run.checkpoint(name)
        if state is not None:
            out.append((name, state))
    return out


# ----------------------------------------------------------------------------- Lab 3


def bit_width_evaluations(session: NotebookSession, item: str) -> Outcome:
    """lab3.b: the pretrained weights were evaluated quantized at every bit width of the term;
    lab3.d: so were the weights of a pruned model of Lab 2 (any of its checkpoints)."""
    run = _hw4(session)
    if isinstance(run, Outcome):
        return run
    c3 = session.cfg.lab3
    if item == "lab3.b":
        state, bits, what = session.pretrained, c3.bits, "the pretrained model"
        tests = _bit_tests(session, run, session.pretrained_fingerprint, bits)
    else:
        pruned = _pruned_models(session, run)
        if not pruned:
            names = ", ".join(session.cfg.lab2.checkpoints.values())
            return Outcome.fail(f"none of the pruned models of Lab 2 ({names}) was written, so no pruned "
                                "model could be quantized: "
                                + run.failure_near(*session.cfg.lab2.checkpoints.values()))
        bits = c3.pruned_bits
        # the pruned model whose evaluations cover the most bit widths
        candidates = [(n, st, _bit_tests(session, run, fingerprint(st), bits, outside_finetuning=False))
                      for n, st in pruned]
        name, state, tests = max(candidates, key=lambda nst: len({e["nbits"] for e in nst[2]}))
        what = f"the pruned model ({name})"
    done = {e["nbits"]: e for e in tests}
    missing = [b for b in bits if b not in done]
    for b, e in sorted(done.items()):
        reference = session.evaluator.accuracy(state, b)
        if isinstance(e.get("accuracy"), float) and abs(e["accuracy"] - reference) > 0.02:
            session.note(f"{item}: at {b} bits your quantizer gives {e['accuracy']:.4f} on {what}; the "
                         f"reference quantizer gives {reference:.4f} on the same weights (see Lab 3 (a))")
    if not missing:
        return Outcome(1.0)
    return Outcome((len(bits) - len(missing)) / len(bits),
                   [f"{what} was not evaluated with test(net) at {', '.join(map(str, missing))} bits "
                    f"(ResNetCIFAR(num_layers=20, Nbits=...) holding its weights): "
                    + run.failure_near("Nbits")])


def lab3c_finetuned(session: NotebookSession) -> Outcome:
    """Lab 3 (c): train_util.finetune ran on the pretrained weights quantized at every bit width."""
    run = _hw4(session)
    if isinstance(run, Outcome):
        return run
    bits = session.cfg.lab3.finetune_bits
    starts = {e.get("nbits") for e in run.events_of("finetune_start")
              if e.get("fingerprint") == session.pretrained_fingerprint and not e.get("symmetric")}
    missing = [b for b in bits if b not in starts]
    if not missing:
        return Outcome(1.0)
    return Outcome((len(bits) - len(missing)) / len(bits),
                   [f"finetune(net, ...) did not run on the pretrained model quantized to "
                    f"{', '.join(map(str, missing))} bits: " + run.failure_near("finetune(")])


def lab3c_evaluated(session: NotebookSession) -> Outcome:
    """Lab 3 (c): after finetuning at each bit width the notebook loaded the model finetune saved
    and evaluated it at that bit width; the accuracy is the best one finetune reported."""
    run = _hw4(session)
    if isinstance(run, Outcome):
        return run
    c3 = session.cfg.lab3
    name = c3.checkpoint
    order = list(enumerate(run.events))
    problems, good = [], 0
    last_save_fp = None
    for b in c3.finetune_bits:
        # the pretrained model's finetuning at b bits (the course's Lab 3 (d) finetunes the pruned
        # model at the same bit widths afterwards: that run is not this one)
        starts = [i for i, e in order if e.get("ev") == "finetune_start" and e.get("nbits") == b
                  and not e.get("symmetric") and e.get("fingerprint") == session.pretrained_fingerprint]
        if not starts:
            problems.append(f"{b} bits: not finetuned")
            continue
        start = starts[-1]
        end = next((i for i, e in order[start:] if e.get("ev") == "finetune_end"), None)
        if end is None:
            problems.append(f"{b} bits: finetuning did not finish: {run.failure_near('finetune(')}")
            continue
        saves = [e for i, e in order[start:end] if e.get("ev") == "save" and e.get("file") == name]
        if not saves:
            problems.append(f"{b} bits: finetune saved no model")
            continue
        saved_fp, best = saves[-1].get("fingerprint"), run.events[end].get("best")
        following = next((i for i, e in order[end:] if e.get("ev") == "finetune_start"), len(order))
        tests = [e for _, e in order[end:following]
                 if e.get("ev") == "test" and e.get("fingerprint") == saved_fp and e.get("nbits") == b]
        if not tests:
            problems.append(f"{b} bits: the finetuned model ({name}) was not loaded and evaluated with "
                            "test(net) at that bit width")
            continue
        acc = tests[0].get("accuracy")
        one = session.evaluator.one_image
        same = isinstance(acc, float) and isinstance(best, float) and abs(acc - best) <= one
        if not same:
            problems.append(f"{b} bits: the evaluation after loading gave {acc}, but finetune's best epoch "
                            f"reported {best}")
            continue
        good += 1
        last_save_fp = saved_fp
    # the file on disk must be the last model saved under its name -- by any finetune: the course's
    # Lab 3 (d) cell finetunes the pruned model afterwards and overwrites it, rightly
    saves = [e for e in run.events_of("save") if e.get("file") == name]
    if saves and last_save_fp:
        last_save_fp = saves[-1].get("fingerprint")
    state, _ = run.checkpoint(name)
    stale = last_save_fp and state is not None and fingerprint(state) != last_save_fp
    if stale and good == len(c3.finetune_bits):
        problems.append(f"{name} on disk is not the model finetune saved last")
        good -= 1
    if not problems:
        return Outcome(1.0)
    return Outcome(max(good, 0) / len(c3.finetune_bits), [f"Lab 3 (c) in {run.file}:", *problems])
