"""The course's notebook as students filled it, graded by the real grader (issue 11).

The bundled course-format samples (``fixtures/samples/specs_course.py``) are graded in full by the
session's batches (test_samples.py); these tests pin single constructs to the item they concern.
"""

from __future__ import annotations

from conftest import grade

from fixtures.samples import specs_course as course
from reference.config import load

CFG = load()

# The course's notebook always passes q (`prune_by_percentage(layer, q=70.0)`,
# `global_prune_by_percentage(net, q=q)`); students delete or change the defaults freely.
_NO_DEFAULTS = course.CourseNotebook(
    prune=course.PRUNE_TO_DEVICE,
    global_prune=course.GLOBAL_CUDA.replace("def global_prune_by_percentage(net, q=70.0):",
                                            "def global_prune_by_percentage(net, q=None):"),
)


def test_a_default_q_the_notebook_never_uses_is_not_graded(tmp_path):
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "hw4.ipynb").write_text(_NO_DEFAULTS.render())
    result = grade(folder, k="lab2b or lab2e")
    for item in ("lab2.b", "lab2.e"):
        failed = [f"{c.name}: {c.message}" for c in result.cases() if c.item == item and c.kind == "function"
                  and c.status != "passed"]
        assert not failed, failed
        assert abs(result.items[item].score - CFG.rubric[item].function) < 1e-3


def test_an_older_term_without_lab3e_grades_its_two_argument_ste_in_full(tmp_path, monkeypatch, repo_root):
    """2022F: STE.forward(ctx, w, bit), the zero mask an optional bonus, no Lab 3 (e). With the
    term's config Lab 3 (e) runs no test and is worth 0, Lab 3 (a) takes its points."""
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "FP_layers.py").write_text(course.fp_layers(course.STE_2022F, symmetric=False))
    monkeypatch.setenv("HW4_CONFIG", str(repo_root / "reference" / "terms" / "2022F.toml"))
    result = grade(folder, k="lab3a or lab3e")
    assert [c for c in result.cases() if c.item == "lab3.e"] == []
    assert (result.items["lab3.e"].score, result.items["lab3.e"].possible) == (0, 0)
    failed = [f"{c.name}: {c.message}" for c in result.cases() if c.item == "lab3.a" and c.status != "passed"]
    assert not failed, failed
    assert abs(result.items["lab3.a"].score - 14) < 1e-3
