"""Worker probes for Lab 1: call one student function on many inputs in one round trip.

Loaded by ``worker.py`` inside the sandbox (``register(api)``); see ``ProbeAPI`` there. The Lab 1
runner tests use it for error-carried-forward grading: when a trajectory is wrong only because
the student's own ``gradient`` (or ``soft_threshold``) is, they evaluate that function at every
row of the trajectory -- 200 calls that would otherwise be 200 round trips.
"""

from __future__ import annotations

from typing import Any

api: Any = None  # the worker's ProbeAPI, set by register()

#: at most this many calls per probe (a 200-step trajectory needs 200)
MAX_CALLS = 2000


def register(worker_api) -> None:
    global api  # noqa: PLW0603 - the worker hands its API over once, when it loads the probes
    api = worker_api
    api.add("lab1_map", probe_map)


def probe_map(target: str, calls: list):
    """``{"values": [fn(*args) for args in calls]}`` for the student's function ``target``."""
    if not isinstance(calls, list) or len(calls) > MAX_CALLS:
        raise api.Reply("grader", f"lab1_map: calls must be a list of at most {MAX_CALLS} argument lists")
    fn = api.resolve(target)
    return {"values": [fn(*args) for args in calls]}
