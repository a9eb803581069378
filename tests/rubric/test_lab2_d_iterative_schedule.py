"""Lab 2 (d): the iterative-pruning loop prunes every layer to 7%, 14%, ..., 70% before epochs 1..10
(the term's step: 8%, ..., 80% in the 80 % terms), then finetunes 10 more epochs with the mask fixed.

The course has no function for this part: the schedule is an inline cell (``q = ...`` then
``prune_by_percentage(layer, q=q)`` inside ``for epoch in range(...)``), as the course gives it:
prune before epochs 0-9, ``finetune_after_prune(..., prune=False)`` until epoch 8 and with the
default ``prune=True`` from epoch 9 on, its own test loop over ``testloader`` after each epoch. The
cell is located by parsing the notebook here and dry-run in the sandbox with stubs: a recorder in
place of ``prune_by_percentage``, a ``finetune_after_prune`` that only records its ``prune`` flag, a
``test`` that returns a number, ``torch.save``/``torch.load`` that touch no file, the trusted float
ResNet-20 as ``net`` and the globals of the course's setup cell (small non-empty loaders). So only
the schedule is graded here, never the student's pruning or finetuning (graded in (b) and (c)),
and the run takes about a second.
"""

import pytest
from lab2_support import CFG, dry_run, find_iterative_cell, fixture_model

from grader import oracle

rubric = pytest.mark.rubric

PRUNE_EPOCHS = CFG.lab2.iterative_prune_epochs
FIXED_EPOCHS = CFG.lab2.iterative_fixed_epochs
TARGET = CFG.lab2.iterative_step * PRUNE_EPOCHS
SCHEDULE = [oracle.call("reference.lab2:iterative_schedule", e) for e in range(PRUNE_EPOCHS)]
# q values are percents computed as (epoch + 1) * step, epoch * step + step, a running sum, ...:
# any way of computing them agrees with the schedule to far better than 1e-6 percent.
Q_TOL = 1e-6


@pytest.fixture(scope="module")
def iterative_run(submission):
    """One dry run of the student's iterative cell, shared by this item's tests."""
    cell = find_iterative_cell(submission)
    return dry_run(submission, cell, fixture_model().state_dict())


def _fmt_q(q) -> str:
    return f"{q:g}" if isinstance(q, float) else str(q)


def _same_q(got, want: float) -> bool:
    return isinstance(got, float) and abs(got - want) <= Q_TOL


@rubric(item="lab2.d", weight=1.5, visibility="public")
def test_lab2d_prunes_every_layer_step_by_step_up_to_the_target(iterative_run):
    """Before epoch e = 1..10 the loop prunes every prunable layer once, to q = e x the term's step
    percent (7, 14, ..., 70)."""
    run = iterative_run
    epochs = run.epochs()
    layers = set(run.layers)
    seen = []
    for e, want in enumerate(SCHEDULE):
        epoch = epochs[e] if e < len(epochs) else None
        prunes = epoch.prunes if epoch else []
        qs = sorted({_fmt_q(q) for _, q in prunes})
        seen.append("/".join(qs) if qs else "-")
        pruned = [name for name, _ in prunes]
        problem = None
        if not prunes:
            problem = "no layer was pruned"
        elif any(not _same_q(q, want) for _, q in prunes):
            problem = f"layers were pruned to q = {', '.join(qs)}"
        elif set(pruned) != layers or len(pruned) != len(layers):
            extra = sorted(set(pruned) - layers)
            missing = sorted(layers - set(pruned))
            twice = sorted({n for n in pruned if pruned.count(n) > 1})
            parts = ([f"pruned layers that are not prunable ({', '.join(extra[:3])})"] if extra else []) + \
                    ([f"skipped {', '.join(missing[:3])}"] if missing else []) + \
                    ([f"pruned {', '.join(twice[:3])} more than once"] if twice else [])
            problem = "; ".join(parts)
        if problem:
            got = ", ".join(seen) + (", ..." if e + 1 < len(SCHEDULE) else "")
            raise AssertionError(
                f"{run.cell}: before epoch {e + 1} every prunable Conv2d/Linear layer (not id_mapping) "
                f"should be pruned once to q = {want:g}%, but {problem}. q per epoch so far: {got} "
                f"(expected {', '.join(f'{q:g}' for q in SCHEDULE)})" + run.error_note())


@rubric(item="lab2.d", weight=1, visibility="hidden")
def test_lab2d_keeps_the_mask_fixed_from_the_last_pruning_epoch_on(iterative_run):
    """From the epoch that reaches the target (70%) on, finetune_after_prune runs with prune=True,
    10 more epochs."""
    run = iterative_run
    epochs = [e for e in run.epochs() if e.prune_flag is not None]
    total = PRUNE_EPOCHS + FIXED_EPOCHS
    assert len(epochs) == total, (
        f"{run.cell}: the loop called finetune_after_prune {len(epochs)} times; expected {total} epochs "
        f"({PRUNE_EPOCHS} while pruning up to {TARGET:g}%, then {FIXED_EPOCHS} with the mask fixed)"
        + run.error_note())
    # Paired with a check a trivial schedule fails (issue 14): q the same every epoch (0, or the
    # target at once) or the epoch number itself keeps the mask "fixed" just as well.
    qs = [(e.index, q) for e in epochs[:PRUNE_EPOCHS] for _, q in e.prunes]
    if not qs or len({_fmt_q(q) for _, q in qs}) == 1 or all(q in (i, i + 1) for i, q in qs):
        shown = ", ".join(dict.fromkeys(_fmt_q(q) for _, q in qs)) or "nothing"
        raise AssertionError(f"{run.cell}: the loop prunes to q = {shown} in its first {PRUNE_EPOCHS} epochs, a "
                             f"trivial schedule; it must rise to {TARGET:g}% before the mask is fixed")
    free = [e.index + 1 for e in epochs[PRUNE_EPOCHS - 1:] if not e.prune_flag]
    assert not free, (
        f"{run.cell}: finetune_after_prune ran with prune=False in epoch(s) {', '.join(map(str, free))}; "
        f"from epoch {PRUNE_EPOCHS} on (the one that reaches {TARGET:g}%) the mask must stay fixed "
        "(prune=True), or pruned weights grow back")
    late = [(e.index + 1, q) for e in epochs[PRUNE_EPOCHS:] for _, q in e.prunes if not _same_q(q, TARGET)]
    late += [(e.index + 1, q) for e in epochs[PRUNE_EPOCHS:] for q in e.global_prunes]
    assert not late, (
        f"{run.cell}: after epoch {PRUNE_EPOCHS} the loop still pruned (epoch {late[0][0]}, q = "
        f"{_fmt_q(late[0][1])}); the last {FIXED_EPOCHS} epochs only finetune at {TARGET:g}%")
