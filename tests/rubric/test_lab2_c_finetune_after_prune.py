"""Lab 2 (c): finetune_after_prune(net, trainloader, criterion, optimizer, prune=True) trains one epoch
and, with prune=True, keeps every pruned weight exactly zero; plus the sparsity-check cell.

Inputs are built here, never by the student's other functions (no cascade): the pretrained
ResNet-20 pruned by ``torch.nn.utils.prune`` (``rubric_support.magnitude_pruned``), a few fixture
batches in a fixed order, a fresh SGD optimizer with the course's momentum and weight decay.
Masking the weights after ``optimizer.step()`` and masking the gradients before it are both
right, and both give exactly the reference's kept weights.
"""

import pytest
import torch
from lab2_support import (
    CFG,
    dry_run,
    find_sparsity_cell,
    fixture_batches,
    fixture_model,
    one_thread,
    parse_sparsity_lines,
    prunable_layers,
    refuse_trivial_training,
)
from rubric_support import magnitude_pruned

import reference.lab2 as ref
from grader import oracle, refcache
from grader.sandbox.proxy import criterion_spec, loader_spec, sgd_spec

rubric = pytest.mark.rubric

# Three batches of 4 fixture images: what the tests tell apart (the mask taken once and applied
# after every step, zero_grad, prune=False) does not depend on the batch size, and one call takes
# about 0.11 s of the worker's CPU (0.27 s with batches of 16; 5 calls per grading). lr 0.01 (5x
# the course's) so that three steps move every weight with a nonzero gradient by far more than
# float32 rounding.
N_IMAGES, BATCH, LR, MOMENTUM = 12, 4, 0.01, 0.875
CALL = "finetune_after_prune(net, trainloader, criterion, optimizer, prune={})"


def _pruned_model(q: float = CFG.lab2.q, random_mask: bool = False):
    net = fixture_model()
    if random_mask:
        # a zero pattern that is not magnitude pruning: re-pruning by |w| cannot reproduce it
        gen = torch.Generator().manual_seed(2024)
        with torch.no_grad():
            for _name, layer in prunable_layers(net):
                layer.weight.mul_((torch.rand(layer.weight.shape, generator=gen) >= 0.4).float())
    else:
        for _name, layer in prunable_layers(net):
            magnitude_pruned(layer, q)
    return net


def _finetune(submission, net, prune: bool | None):
    """Run the student's epoch on ``net`` (updated in place from the sandbox); return the
    prunable weights before and after. ``prune=None`` leaves the argument out, as the notebook's
    finetuning cell does (the signature's default, ``prune=True``, applies)."""
    before = {name: layer.weight.detach().clone() for name, layer in prunable_layers(net)}
    x, y = fixture_batches(N_IMAGES)
    submission.finetune_after_prune(net, loader_spec(x, y, BATCH), criterion_spec(),
                                    sgd_spec(0, lr=LR, momentum=MOMENTUM, weight_decay=CFG.lab2.reg),
                                    **({} if prune is None else {"prune": prune}))
    after = {name: layer.weight.detach().clone() for name, layer in prunable_layers(net)}
    return before, after


@rubric(item="lab2.c", weight=1.5, visibility="public")
def test_lab2c_prune_true_keeps_every_pruned_weight_at_zero(submission):
    """With prune=True every weight that was 0 before the epoch is still exactly 0 after it."""
    before, after = _finetune(submission, _pruned_model(), prune=True)
    refuse_trivial_training(before, after, CALL.format(True))
    moved = {name: int(((before[name] == 0) & (after[name] != 0)).sum()) for name in before}
    bad = {name: n for name, n in moved.items() if n}
    assert not bad, (
        f"{CALL.format(True)} on a 70%-pruned ResNet-20: {sum(bad.values())} pruned weights became "
        f"nonzero, in {len(bad)} layers (e.g. {next(iter(bad))}: {next(iter(bad.values()))}); apply the "
        "mask taken at the start of the epoch after every optimizer.step() (or mask the gradients)")


@rubric(item="lab2.c", weight=0.5, visibility="public")
def test_lab2c_prune_true_still_trains_the_other_weights(submission):
    """With prune=True the nonzero weights still train, and none of them is zeroed."""
    before, after = _finetune(submission, _pruned_model(), prune=True)
    refuse_trivial_training(before, after, CALL.format(True))
    kept = {name: before[name] != 0 for name in before}
    total = sum(int(k.sum()) for k in kept.values())
    changed = sum(int((after[n][kept[n]] != before[n][kept[n]]).sum()) for n in before)
    zeroed = sum(int((after[n][kept[n]] == 0).sum()) for n in before)
    assert zeroed == 0, (f"{CALL.format(True)}: {zeroed} weights that were nonzero became 0; keep the "
                         "zero pattern of the start of the epoch, do not prune further")
    # Three SGD steps with momentum move nearly every weight that has a gradient; no right
    # answer leaves more than a few percent of them exactly where they were.
    assert changed >= 0.5 * total, (
        f"{CALL.format(True)}: only {changed} of the {total} nonzero weights changed; with prune=True "
        "the epoch must still train (zero_grad, forward, loss, backward, optimizer.step() per batch)")


@rubric(item="lab2.c", weight=0.75, visibility="hidden")
def test_lab2c_prune_false_trains_every_weight(submission):
    """With prune=False it is a plain training epoch: pruned weights are free to move."""
    before, after = _finetune(submission, _pruned_model(), prune=False)
    refuse_trivial_training(before, after, CALL.format(False))
    zeros = sum(int((before[n] == 0).sum()) for n in before)
    moved = sum(int(((before[n] == 0) & (after[n] != 0)).sum()) for n in before)
    # The gradient at a pruned weight is almost never exactly 0: a plain epoch moves most of them.
    assert moved >= 0.5 * zeros, (
        f"{CALL.format(False)}: only {moved} of the {zeros} zero weights moved; with prune=False do not "
        "mask anything (the iterative loop relies on it)")


@rubric(item="lab2.c", weight=0.5, visibility="hidden")
def test_lab2c_keeps_any_zero_pattern_fixed(submission):
    """Called without prune= (default prune=True, as the notebook calls it), it keeps the zero
    pattern it was given, whatever made it (not only 70% pruning)."""
    before, after = _finetune(submission, _pruned_model(random_mask=True), prune=None)
    refuse_trivial_training(before, after, "finetune_after_prune(net, trainloader, criterion, optimizer)")
    moved = sum(int(((before[n] == 0) & (after[n] != 0)).sum()) for n in before)
    zeroed = sum(int(((before[n] != 0) & (after[n] == 0)).sum()) for n in before)
    assert moved == 0 and zeroed == 0, (
        "finetune_after_prune(net, trainloader, criterion, optimizer) (default prune=True) on a model "
        f"with a random 40% zero pattern: {moved} zero weights became "
        f"nonzero and {zeroed} nonzero weights became 0; take the mask (w != 0) at the start of the epoch "
        "and keep exactly it, rather than pruning by magnitude again")


def _plain_sgd_epoch() -> dict[str, torch.Tensor]:
    """The reference's epoch with prune=True on the 70%-pruned model: the same for every
    submission, so computed once per grading version (``grader.refcache``)."""
    expected = _pruned_model()
    x, y = fixture_batches(N_IMAGES)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH,
                                         shuffle=False, num_workers=0)
    optimizer = torch.optim.SGD(expected.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=CFG.lab2.reg)
    with one_thread():
        ref.finetune_after_prune(expected, loader, torch.nn.CrossEntropyLoss(), optimizer, prune=True)
    return dict(expected.state_dict())


@rubric(item="lab2.c", weight=0.5, visibility="hidden")
def test_lab2c_trains_the_kept_weights_like_plain_sgd(submission):
    """One epoch with prune=True gives the same model as plain SGD steps followed by the mask."""
    net = _pruned_model()
    _finetune(submission, net, prune=True)
    got, want = net.state_dict(), refcache.stored("lab2c-plain-sgd-epoch", _plain_sgd_epoch)
    worst, where = 0.0, ""
    for key, value in want.items():
        if not value.is_floating_point():
            continue
        diff = float((got[key] - value).abs().max())
        if diff > worst:
            worst, where = diff, key
    # Same data, order and arithmetic: the sandbox and this process differ only in float32
    # summation order (thread counts), about 1e-7; one step's update is lr * |grad| ~ 1e-4,
    # so 1e-5 separates rounding from a missed zero_grad, an extra step or a wrong mask.
    assert worst <= 1e-5, (
        f"{CALL.format(True)} on a 70%-pruned ResNet-20 (3 batches, SGD lr={LR}, momentum={MOMENTUM}): "
        f"{where} differs from the expected result by up to {worst:.3g}; each batch should do "
        "optimizer.zero_grad(), forward, criterion, backward, optimizer.step(), then the mask")


@rubric(item="lab2.c", weight=1, visibility="public")
def test_lab2c_sparsity_check_prints_the_true_sparsity_of_each_layer(submission, credit):
    """The sparsity-check cell prints the true sparsity of every pruned layer (a fraction or a
    percent, in any format that names the layer); a total, if printed, is true too."""
    cell = find_sparsity_cell(submission)
    net = fixture_model()
    layers = prunable_layers(net)
    # a different sparsity per layer, so a number printed for the wrong layer shows
    for i, (_, layer) in enumerate(layers):
        magnitude_pruned(layer, 20.0 + 3.0 * i)
    truth = oracle.call("reference.lab2:sparsity_report", net)
    run = dry_run(submission, cell, net.state_dict())
    printed, total = parse_sparsity_lines(run.stdout, [name for name, _ in layers])
    # Printed values may be rounded (to 2 decimals, or to whole percents): half a percent.
    tol = 0.0051
    wrong = []
    for name, _ in layers:
        want, got = truth["layers"][name]["sparsity"], printed[name]
        if got is None or abs(got - want) > tol:
            wrong.append(f"{name}: printed {'nothing' if got is None else f'{got:.4f}'}, true {want:.4f}")
    # The course's check cells print a total in some places and not in others: it is optional.
    if total is not None and abs(total - truth["sparsity"]) > tol:
        wrong.append(f"total: printed {total:.4f}, true {truth['sparsity']:.4f} (zeros over all pruned "
                     "layers' weights)")
    if wrong:
        values = len(layers) + (total is not None)
        credit.set(1 - len(wrong) / values)
        shown = "; ".join(wrong[:4]) + (f"; and {len(wrong) - 4} more" if len(wrong) > 4 else "")
        raise AssertionError(
            f"{cell}, run on a model with a known sparsity in each layer: {len(wrong)} of {values} "
            f"values wrong or missing ({shown}). Print one line per pruned layer with its name and its "
            "sparsity (e.g. 'Sparsity of <name>: <fraction>'); a total line is optional." + run.error_note())
