"""Shared by the rubric tests and the project's own tests: the Hypothesis profiles.

``grading`` (every grading run uses it: ``--hypothesis-profile grading``) is derandomized, has no
example database, no deadline and fixed example counts, so the same submission gets the same
examples -- and the same score -- on every run and every machine. ``dev`` is for development.
"""

from hypothesis import HealthCheck, settings

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
)
settings.register_profile("dev", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("dev")
