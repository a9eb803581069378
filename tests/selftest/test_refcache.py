"""``grader.refcache``: reference values computed once per grading version, kept in memory and on disk."""

from __future__ import annotations

import os

import pytest
import torch

from grader import refcache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder and an empty process memory for this test."""
    monkeypatch.setenv("HW4_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(refcache, "_memory", {})
    return tmp_path / "cache"


def _counting(value):
    calls = []

    def compute():
        calls.append(1)
        return value

    return compute, calls


def test_a_value_is_computed_once_and_read_back_bit_identical_by_another_process(cache, monkeypatch):
    value = {"w": torch.randn(4, 3, dtype=torch.float32), "acc": 0.8125, "bits": [2, 3]}
    compute, calls = _counting(value)
    first = refcache.stored("some-value", compute)
    assert first is value and refcache.stored("some-value", compute) is value and len(calls) == 1
    assert (cache / refcache._version() / "some-value.pt").is_file()
    monkeypatch.setattr(refcache, "_memory", {})  # as a fresh process sees it
    again = refcache.stored("some-value", compute)
    assert len(calls) == 1, "read from disk, not computed again"
    assert torch.equal(again["w"], value["w"]) and again["acc"] == value["acc"] and again["bits"] == [2, 3]


def test_prime_loads_every_stored_value_so_forked_children_inherit_them(cache, monkeypatch):
    refcache.stored("a-value", lambda: torch.ones(3))
    monkeypatch.setattr(refcache, "_memory", {})
    monkeypatch.setattr(refcache, "quantized_accuracy", lambda bits: None)  # not what this test is about
    refcache.prime()
    assert torch.equal(refcache._memory["a-value"], torch.ones(3))


def test_a_new_grading_version_computes_its_values_again(cache, monkeypatch):
    compute, calls = _counting(torch.zeros(2))
    refcache.stored("v", compute)
    monkeypatch.setattr(refcache, "_memory", {})
    monkeypatch.setattr(refcache, "_version", lambda: "another-version")
    refcache.stored("v", compute)
    assert len(calls) == 2


def test_a_corrupt_or_unwritable_cache_only_costs_the_computation(cache, monkeypatch):
    compute, calls = _counting(torch.arange(3))
    refcache.stored("c", compute)
    (cache / refcache._version() / "c.pt").write_bytes(b"not a torch file")
    monkeypatch.setattr(refcache, "_memory", {})
    assert torch.equal(refcache.stored("c", compute), torch.arange(3)) and len(calls) == 2
    blocker = cache.parent / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("HW4_CACHE_DIR", str(blocker / "cache"))  # a folder cannot be made there
    monkeypatch.setattr(refcache, "_memory", {})
    assert torch.equal(refcache.stored("c", compute), torch.arange(3)) and len(calls) == 3


def test_only_data_is_read_back(cache, monkeypatch):
    """A stored file is read with weights_only: one holding an object that would run code on
    loading is refused, and the value is computed instead."""
    folder = cache / refcache._version()
    folder.mkdir(parents=True)
    torch.save({"x": os.system}, folder / "evil.pt")
    compute, calls = _counting(1.5)
    assert refcache.stored("evil", compute) == 1.5 and len(calls) == 1


def test_names_are_checked():
    with pytest.raises(ValueError, match="must match"):
        refcache.stored("../escape", lambda: 1)


def test_the_quantized_accuracy_is_the_same_computed_or_stored(cache, monkeypatch):
    computed = refcache.quantized_accuracy(4, images=20)
    monkeypatch.setattr(refcache, "_memory", {})
    monkeypatch.setattr(refcache, "_quantized_accuracy", lambda *a: pytest.fail("computed again"))
    assert refcache.quantized_accuracy(4, images=20) == computed
