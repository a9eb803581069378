"""Fixtures of the rubric tests (the plugin ``grader.plugin`` provides ``submission``/``credit``),
and which tests belong to the term being graded."""

import numpy as np
import pytest

from reference.config import load

#: ``@pytest.mark.zero_mask``: the test checks that the STE keeps pruned weights at 0, which older
#: terms made an optional bonus (``[lab3] zero_mask_required = false``).
ZERO_MASK = "zero_mask"


def pytest_configure(config):
    config.addinivalue_line("markers", f"{ZERO_MASK}: checks the STE's zero mask (not graded where optional)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Tests that are not part of the term are not collected at all (so they neither earn nor
    cost points): an item the term's rubric gives 0 points (Lab 3 (e) in terms whose STE had no
    ``symmetric``), and the zero-mask checks where the mask was optional."""
    cfg = load()
    keep, drop = [], []
    for item in items:
        marks = list(item.iter_markers("rubric"))
        rubric_item = (marks[0].kwargs.get("item") or (marks[0].args or [None])[0]) if marks else None
        outside = rubric_item in cfg.rubric and cfg.rubric[rubric_item].points == 0
        outside |= bool(item.get_closest_marker(ZERO_MASK)) and not cfg.lab3.zero_mask_required
        (drop if outside else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def lab1_data(hw4_config):
    """The term's Lab 1 data as arrays: (X, y), read-only (every test of the session shares them)."""
    X, y = np.array(hw4_config.lab1.X), np.array(hw4_config.lab1.y)
    X.flags.writeable = y.flags.writeable = False
    return X, y
