"""The Lab 2 reference against independent oracles: torch.nn.utils.prune for the magnitude masks,
plain SGD for the finetune, the config for the schedule, and the fixture checkpoint's accuracy.

``torch.nn.utils.prune`` prunes ``round(amount * n)`` weights (Python's round) while the reference
prunes those below ``numpy.percentile(|w|, q)``, i.e. ``ceil((n - 1) q / 100)`` of them: both
zero a prefix of the magnitude order, so on tie-free weights the masks are nested and differ in
at most one weight.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.utils.prune as tprune
from hypothesis import given
from hypothesis import strategies as st

import reference.lab2 as ref
from reference import train_util
from reference.config import load
from reference.data import FixtureCIFAR10, load_arrays
from reference.resnet20 import ResNetCIFAR

CFG = load()
SEEDS = st.integers(0, 2**16)
PERCENTS = st.floats(0.0, 100.0, allow_nan=False, allow_infinity=False)
LINEAR_SHAPES = st.tuples(st.integers(1, 12), st.integers(1, 24))
CONV_SHAPES = st.tuples(st.integers(1, 8), st.integers(1, 4), st.integers(1, 3))


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread avoids oversubscription on shared machines."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _tie_free(layer: nn.Module, seed: int) -> nn.Module:
    """Give the layer nonzero weights with pairwise distinct magnitudes (a permutation of a
    strictly increasing ladder, random signs)."""
    gen = torch.Generator().manual_seed(seed)
    n = layer.weight.numel()
    ladder = (torch.arange(1, n + 1, dtype=torch.float32) + torch.rand(n, generator=gen) * 0.5) / n
    signs = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    values = (ladder * signs)[torch.randperm(n, generator=gen)]
    with torch.no_grad():
        layer.weight.copy_(values.view_as(layer.weight))
    return layer


def _assert_nested_within_one(ours: torch.Tensor, oracle: torch.Tensor, what: str) -> None:
    """Two zero masks (bool, True = pruned) of prefixes of one magnitude order."""
    assert bool((ours & ~oracle).sum() == 0 or (oracle & ~ours).sum() == 0), f"{what}: masks not nested"
    assert int((ours != oracle).sum()) <= 1, (
        f"{what}: reference pruned {int(ours.sum())}, torch.nn.utils.prune {int(oracle.sum())}")


@given(shape=st.one_of(LINEAR_SHAPES, CONV_SHAPES), seed=SEEDS, q=PERCENTS)
def test_prune_by_percentage_matches_l1_unstructured_modulo_rounding(shape, seed, q):
    layer = nn.Linear(shape[1], shape[0]) if len(shape) == 2 else nn.Conv2d(shape[1], shape[0], shape[2])
    layer = _tie_free(layer, seed)
    oracle = _tie_free(nn.Linear(shape[1], shape[0]) if len(shape) == 2
                       else nn.Conv2d(shape[1], shape[0], shape[2]), seed)
    bias = layer.bias.detach().clone()
    before = layer.weight.detach().clone()
    ref.prune_by_percentage(layer, q=q)
    tprune.l1_unstructured(oracle, "weight", amount=q / 100.0)
    ours = layer.weight.detach() == 0
    _assert_nested_within_one(ours, oracle.weight_mask == 0, f"shape {shape}, q={q}")
    assert torch.equal(layer.weight.detach()[~ours], before[~ours]), "kept weights changed"
    assert torch.equal(layer.bias.detach(), bias), "the bias changed"


def test_prune_by_percentage_edge_percents_and_ties():
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.5, 0.5, 1.0]]))
    ref.prune_by_percentage(layer, q=50.0)  # threshold 0.5: >= keeps every tie
    assert layer.weight.tolist() == [[0.5, -0.5, 0.5, 1.0]]
    ref.prune_by_percentage(layer, q=100.0)  # threshold = max: only the largest survives
    assert layer.weight.tolist() == [[0.0, 0.0, 0.0, 1.0]]
    dense = nn.Linear(3, 2)
    before = dense.weight.detach().clone()
    ref.prune_by_percentage(dense, q=0.0)
    assert torch.equal(dense.weight.detach(), before)


def test_prune_by_percentage_keeps_dtype_and_works_on_non_contiguous_weights():
    conv = _tie_free(nn.Conv2d(3, 4, 3), 7).double().to(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    param = conv.weight
    ref.prune_by_percentage(conv, q=70.0)
    assert conv.weight is param and conv.weight.dtype == torch.float64
    assert int((conv.weight == 0).sum()) == int(np.ceil((conv.weight.numel() - 1) * 0.7))


def _model(seed: int) -> nn.ModuleDict:
    net = nn.ModuleDict({
        "conv": _tie_free(nn.Conv2d(2, 4, 3), seed),
        "block": nn.ModuleDict({"conv1": _tie_free(nn.Conv2d(4, 4, 1), seed + 1),
                                "id_mapping": _tie_free(nn.Conv2d(4, 4, 1), seed + 2)}),
        "fc": _tie_free(nn.Linear(8, 3), seed + 3),
    })
    with torch.no_grad():  # different scales per layer, so one threshold prunes them differently
        net["conv"].weight.mul_(0.1)
        net["fc"].weight.mul_(10.0)
    return net


@given(seed=SEEDS, q=PERCENTS)
def test_global_prune_matches_global_unstructured_modulo_rounding(seed, q):
    net, oracle = _model(seed), _model(seed)
    # ladders of different lengths with random offsets: magnitudes are distinct across layers too
    shortcut = net["block"]["id_mapping"].weight.detach().clone()
    ref.global_prune_by_percentage(net, q=q)
    params = [(m, "weight") for _, m in ref.prunable_layers(oracle)]
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=q / 100.0)
    ours = torch.cat([(m.weight.detach() == 0).flatten() for _, m in ref.prunable_layers(net)])
    theirs = torch.cat([(m.weight_mask == 0).flatten() for m, _ in params])
    _assert_nested_within_one(ours, theirs, f"seed {seed}, q={q}")
    assert torch.equal(net["block"]["id_mapping"].weight.detach(), shortcut), "id_mapping was pruned"


def test_global_prune_leaves_layers_at_different_sparsities():
    net = _model(3)
    ref.global_prune_by_percentage(net, q=50.0)
    report = ref.sparsity_report(net)
    per_layer = {name: s["sparsity"] for name, s in report["layers"].items()}
    # conv holds the smallest weights (scaled by 0.1), fc the largest (by 10): at q = 50 the one
    # threshold takes most of conv and none of fc
    assert per_layer["conv"] > 0.7 and per_layer["fc"] == 0.0, per_layer
    assert abs(report["zeros"] - 0.5 * report["total"]) <= 1
    assert set(per_layer) == {"conv", "block.conv1", "fc"}


# ----------------------------------------------------------------------------- finetune


def _fixture_net() -> ResNetCIFAR:
    net = ResNetCIFAR(num_layers=20)
    net.load_state_dict(torch.load(CFG.data.checkpoint, map_location="cpu", weights_only=True))
    return net.train()


def _loader(n: int = 32, batch: int = 16):
    arrays = load_arrays(CFG.data.fixture)
    x = torch.from_numpy(arrays["x_train"][:n]).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(CFG.data.mean).view(1, 3, 1, 1)) / torch.tensor(CFG.data.std).view(1, 3, 1, 1)
    y = torch.from_numpy(arrays["y_train"][:n]).long()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)


@pytest.mark.parametrize("prune", [True, False])
def test_finetune_after_prune_keeps_zeros_only_when_asked(prune):
    net = _fixture_net()
    for _, layer in ref.prunable_layers(net):
        ref.prune_by_percentage(layer, q=70.0)
    before = {n: m.weight.detach().clone() for n, m in ref.prunable_layers(net)}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.875, weight_decay=1e-4)
    ref.finetune_after_prune(net, _loader(), nn.CrossEntropyLoss(), optimizer, prune=prune)
    zeros = sum(int((w == 0).sum()) for w in before.values())
    moved = sum(int(((before[n] == 0) & (m.weight != 0)).sum()) for n, m in ref.prunable_layers(net))
    trained = sum(int(((before[n] != 0) & (m.weight != before[n])).sum())
                  for n, m in ref.prunable_layers(net))
    assert trained > 0.9 * sum(int((w != 0).sum()) for w in before.values())
    if prune:
        assert moved == 0
    else:
        assert moved > 0.9 * zeros


def test_finetune_keeps_the_kept_weights_of_plain_sgd():
    """With prune=True the kept weights follow plain SGD exactly (the mask only zeroes the rest),
    which is why gradient masking and weight masking are graded as equal."""
    net, plain = _fixture_net(), _fixture_net()
    for (_, a), (_, b) in zip(ref.prunable_layers(net), ref.prunable_layers(plain), strict=True):
        ref.prune_by_percentage(a, q=70.0)
        ref.prune_by_percentage(b, q=70.0)
    masks = {n: (m.weight != 0) for n, m in ref.prunable_layers(net)}
    opt_a = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.875, weight_decay=1e-4)
    opt_b = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.875, weight_decay=1e-4)
    ref.finetune_after_prune(net, _loader(), nn.CrossEntropyLoss(), opt_a, prune=True)
    criterion = nn.CrossEntropyLoss()
    for x, y in _loader():  # gradient masking, written out
        opt_b.zero_grad()
        criterion(plain(x), y).backward()
        for name, layer in ref.prunable_layers(plain):
            layer.weight.grad.mul_(masks[name])
        opt_b.step()
    for key, value in net.state_dict().items():
        assert torch.allclose(value.float(), plain.state_dict()[key].float(), atol=1e-7, rtol=0), key


# ----------------------------------------------------------------------------- report and schedule


def test_sparsity_report_counts_exact_zeros():
    net = nn.ModuleDict({"a": nn.Linear(4, 2, bias=False), "id_mapping": nn.Conv2d(1, 1, 1),
                         "b": nn.Conv2d(1, 2, 2, bias=False)})
    with torch.no_grad():
        net["a"].weight.copy_(torch.tensor([[0.0, 1.0, 0.0, 2.0], [3.0, 0.0, 4.0, 5.0]]))  # 3 of 8
        net["b"].weight.fill_(1.0)
        net["b"].weight[0, 0, 0, 0] = 0.0  # 1 of 8
        net["id_mapping"].weight.zero_()  # not prunable: not counted
    report = ref.sparsity_report(net)
    assert report["layers"]["a"] == {"zeros": 3, "total": 8, "sparsity": 3 / 8}
    assert report["layers"]["b"] == {"zeros": 1, "total": 8, "sparsity": 1 / 8}
    assert "id_mapping" not in report["layers"]
    assert (report["zeros"], report["total"], report["sparsity"]) == (4, 16, 0.25)
    assert ref.sparsity_report(net, layers=[])["sparsity"] == 0.0


def test_iterative_schedule_follows_the_config():
    c = CFG.lab2
    expected = [(e + 1) * c.iterative_step for e in range(c.iterative_prune_epochs)]
    expected += [None] * c.iterative_fixed_epochs
    assert [ref.iterative_schedule(e) for e in range(len(expected))] == expected
    assert expected[c.iterative_prune_epochs - 1] == pytest.approx(100 * c.sparsity_target)
    for bad in (-1, len(expected)):
        with pytest.raises(ValueError, match="outside"):
            ref.iterative_schedule(bad)
    other = dataclasses.replace(CFG, lab2=dataclasses.replace(
        c, iterative_step=20.0, iterative_prune_epochs=3, iterative_fixed_epochs=1))
    assert [ref.iterative_schedule(e, other) for e in range(4)] == [20.0, 40.0, 60.0, None]


def test_iterative_prune_reaches_the_target_and_keeps_the_mask_fixed():
    cfg = dataclasses.replace(CFG, lab2=dataclasses.replace(
        CFG.lab2, iterative_step=20.0, iterative_prune_epochs=3, iterative_fixed_epochs=1))
    net = _fixture_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.875, weight_decay=1e-4)
    history = ref.iterative_prune(net, _loader(16, 16), nn.CrossEntropyLoss(), optimizer, config=cfg)
    assert len(history) == 4
    # the first epochs finetune with prune=False (pruned weights regrow); from the epoch that
    # reaches the target on, the mask is fixed and the sparsity stays at the target
    assert max(history[:2]) < 0.6
    assert history[2] == pytest.approx(0.6, abs=1e-3) and history[3] == history[2]
    for name, layer in ref.prunable_layers(net):
        n = layer.weight.numel()
        assert abs(int((layer.weight == 0).sum()) - 0.6 * n) <= 1, name


# ----------------------------------------------------------------------------- fixture checkpoint


def test_fixture_checkpoint_loads_and_scores_its_recorded_accuracy():
    meta = json.loads((CFG.data.checkpoint.with_suffix(".json")).read_text())
    net = ResNetCIFAR(num_layers=20)
    net.load_state_dict(torch.load(CFG.data.checkpoint, map_location="cpu", weights_only=True), strict=True)
    net.eval()
    import torchvision.transforms as transforms

    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize(train_util.MEAN, train_util.STD)])
    dataset = FixtureCIFAR10(train=False, transform=transform, path=CFG.data.fixture)
    loader = torch.utils.data.DataLoader(dataset, batch_size=100, shuffle=False, num_workers=0)
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((net(x).argmax(1) == y).sum())
    assert len(dataset) == meta["test_images"]
    assert correct / len(dataset) == meta["test_accuracy"]


def test_readme_states_the_fixture_checkpoint_as_recorded():
    """The README quotes the checkpoint's accuracy, build command and runtime from the build's record."""
    meta = json.loads((CFG.data.checkpoint.with_suffix(".json")).read_text())
    readme = (CFG.data.checkpoint.parent.parent / "README.md").read_text()
    assert f"Test accuracy {meta['test_accuracy']:g}" in readme
    assert meta["command"] in readme
    assert f"{meta['build_seconds']} s" in readme
