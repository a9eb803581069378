"""``results.json`` in Gradescope's format, and its check against ``grader/schema/results.schema.json``.

The schema is Gradescope's published format narrowed to what hw4grade promises; :func:`problems`
adds the checks a schema cannot express (the total equals the sum of the tests, no test above its
maximum), so the test suite and ``hw4grade`` itself use one definition of "valid".

Gradescope shows ``output`` as plain text (``output_format: text``), so markup in a student's
message stays text there; every string of the file still goes through
``grader.outputs.escape.plain``: no escape sequence or control character reaches a reader.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from grader.outputs.escape import plain
from grader.results import SubmissionResult
from reference.config import Config

__all__ = ["SCHEMA_PATH", "gradescope_results", "problems", "results_text", "schema"]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "results.schema.json"
# Scores are rounded to 4 decimals in the file: sums may differ from the total by rounding only.
_TOLERANCE = 1e-3


def gradescope_results(result: SubmissionResult, cfg: Config, *, public_only: bool = False) -> dict[str, Any]:
    """The Gradescope form of ``result``; hidden tests get the config's ``hidden_visibility``."""
    return _plain_strings(
        result.to_gradescope(hidden_visibility=cfg.grading.hidden_visibility, include_not_run=not public_only)
    )


def _plain_strings(data: Any) -> Any:
    if isinstance(data, str):
        return plain(data)
    if isinstance(data, dict):
        return {k: _plain_strings(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain_strings(v) for v in data]
    return data


def results_text(result: SubmissionResult, cfg: Config, *, public_only: bool = False) -> str:
    return json.dumps(gradescope_results(result, cfg, public_only=public_only), indent=1) + "\n"


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def problems(data: Any) -> list[str]:
    """Everything wrong with a ``results.json`` document (empty: valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    out = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if out:
        return out
    tests = data["tests"]
    for n, test in enumerate(tests):
        if test["score"] > test["max_score"] + _TOLERANCE:
            out.append(
                f"tests/{n} ({test['name']}): score {test['score']} above max_score {test['max_score']}"
            )
    total = sum(t["score"] for t in tests)
    if abs(total - data["score"]) > _TOLERANCE * max(1, len(tests)):
        out.append(f"score {data['score']} is not the sum of the tests' scores ({total:.4f})")
    return out
