"""Record what the student edition needs from the reference: run the public tests on the solution.

``hw4grade assign`` runs every public rubric test against the reference solution (the ``solution``
rendering of ``reference/``, a hand-in that is right everywhere) with :func:`grader.oracle.recording`
on. Each ``oracle.call`` a public test makes is computed by the reference and stored, keyed by its
exact inputs; the same run lists the hidden tests (item, kind, weight: the plugin's "not run"
records) so the student edition can share points as the full edition does. Hypothesis runs with
the derandomized ``grading`` profile, so a student's self-check generates the very inputs recorded
here. Every public test must pass on the solution, or the recording is refused (the reference and
the tests disagree).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from grader import oracle
from grader.edition.contents import EditionError

__all__ = ["Recording", "record"]


@dataclass(frozen=True)
class Recording:
    calls: dict[str, dict]
    hidden: list[dict]

    def text(self) -> str:
        return oracle.dump_table(self.calls, self.hidden)


def record(config_path: Path, isolation: str = "auto") -> Recording:
    """Run the public tests on a fresh solution rendering of the term ``config_path``."""
    from reference.config import load

    cfg = load(config_path)
    saved = os.environ.get("HW4_CONFIG")
    os.environ["HW4_CONFIG"] = str(cfg.path)  # the plugin's hw4_config fixture loads this term too
    try:
        calls, result = _run(cfg, isolation)
    finally:
        if saved is None:
            os.environ.pop("HW4_CONFIG", None)
        else:
            os.environ["HW4_CONFIG"] = saved
    if result.grader_error:
        raise EditionError(f"recording the public tests failed: {result.grader_error.strip()[-2000:]}")
    cases = result.cases()
    failed = [c for c in cases if c.visibility == "public" and not c.passed]
    if failed:
        lines = "\n".join(f"  {c.name}: {c.message.strip()[:400]}" for c in failed)
        raise EditionError(f"the reference solution fails {len(failed)} public test(s); fix the tests or "
                           f"the reference before recording:\n{lines}")
    if not any(c.visibility == "public" for c in cases):
        raise EditionError("no public test ran while recording")
    hidden = [{"item": c.item, "kind": c.kind, "weight": c.weight} for c in cases if c.visibility == "hidden"]
    return Recording(dict(calls), sorted(hidden, key=lambda h: (h["item"], h["kind"], h["weight"])))


def _run(cfg, isolation: str):
    from grader import assign
    from grader.grade import GradeOptions, grade_submission

    with tempfile.TemporaryDirectory(prefix="hw4-record-") as tmp:
        solution = Path(tmp) / "reference-solution"
        for rel, text in assign.render("solution", cfg).files.items():
            path = solution / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        with oracle.recording() as calls:
            result = grade_submission(solution, "reference-solution",
                                      GradeOptions(notebooks=False, public_only=True, isolation=isolation), cfg)
    return calls, result
