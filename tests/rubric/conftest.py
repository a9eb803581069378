"""Fixtures of the rubric tests (the plugin ``grader.plugin`` provides ``submission``/``credit``)."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def lab1_data(hw4_config):
    """The term's Lab 1 data as arrays: (X, y), read-only (every test of the session shares them)."""
    X, y = np.array(hw4_config.lab1.X), np.array(hw4_config.lab1.y)
    X.flags.writeable = y.flags.writeable = False
    return X, y
