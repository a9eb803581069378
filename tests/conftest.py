"""Shared by the rubric tests and the project's own tests: the Hypothesis profiles.

``grading`` (every grading run uses it: ``--hypothesis-profile grading``) is derandomized, has no
example database, no deadline and fixed example counts, so the same submission gets the same
examples -- and the same score -- on every run and every machine. ``dev`` is for development.
"""

from hypothesis import HealthCheck, Phase, settings


def _no_local_constants() -> None:
    """Keep Hypothesis's inputs independent of which of our modules happen to be imported.

    Hypothesis mixes literals found in every non-installed module in ``sys.modules`` into what it
    generates. Which of ours are loaded when a test runs depends on how grading was started (a
    batch child, a self-check, a ``-k`` subset, Gradescope's site-packages install) and on lazy
    imports of earlier tests, so the same submission got different examples -- different failing
    inputs in feedback, possibly different scores (tests/selftest/test_samples.py caught it). The
    local pool is kept empty; Hypothesis's own constants (0, 1, inf, nan, ...) still apply.
    Private API of the pinned Hypothesis: checked here so an upgrade that moves it fails loudly.
    """
    from hypothesis.internal.conjecture import providers

    if not hasattr(providers, "_get_local_constants") or not hasattr(providers, "CONSTANTS_CACHE"):
        raise RuntimeError("hypothesis.internal.conjecture.providers changed: update _no_local_constants "
                           "in tests/conftest.py (grading determinism depends on it)")
    empty = providers.Constants()
    providers._get_local_constants = lambda: empty
    providers.CONSTANTS_CACHE.cache.clear()


_no_local_constants()

settings.register_profile(
    "grading",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    max_examples=30,
    # One failure per test: a student reads one smallest failing input, not a group of them.
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
    # No explain phase: it replays a failing example many times over to annotate which parts of it
    # did not matter, which no feedback shows and which made a failing test cost seconds more.
    phases=[p for p in Phase if p is not Phase.explain],
)
settings.register_profile("dev", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("dev")
