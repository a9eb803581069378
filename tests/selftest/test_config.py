"""The assignment config: the default term, and clear errors for a broken one."""

from __future__ import annotations

import pytest

from reference import config
from reference.config import ITEM_IDS, ConfigError


def test_default_term_matches_the_design():
    cfg = config.load()
    assert cfg.lab1.X == ((1, -2, -1, -1, 1), (2, -1, 2, 0, -2), (-1, 0, 2, 2, 1))
    assert cfg.lab1.y == (7, 1, 1)
    assert (cfg.lab1.lr, cfg.lab1.steps, cfg.lab1.k, cfg.lab1.trim) == (0.02, 200, 2, 3)
    assert cfg.lab1.lambdas == (0.2, 0.5, 1.0, 2.0)
    assert cfg.lab1.prox_thresholds == (0.004, 0.01, 0.02, 0.04)
    assert cfg.lab1.trimmed_thresholds == (0.02, 0.04, 0.1, 0.2)
    assert cfg.lab2.q == 70.0 and cfg.lab3.bits == (6, 5, 4, 3, 2)
    assert [cfg.tf_key[f"1.{i}"] for i in range(1, 11)] == list("FFFFFFTFFT")


def test_rubric_has_every_item_and_adds_up_to_100():
    cfg = config.load()
    assert list(cfg.rubric) == list(ITEM_IDS)
    assert cfg.total_points == 100
    parts = {"tf": 20, "lab1": 30, "lab2": 25, "lab3": 25}
    for part, points in parts.items():
        assert sum(r.points for i, r in cfg.rubric.items() if i.startswith(part + ".")) == points
    for r in cfg.rubric.values():
        assert r.function + r.notebook + r.manual == r.points


def _write(tmp_path, text):
    path = tmp_path / "term.toml"
    path.write_text(text)
    return path


def _default_text():
    return config.DEFAULT_PATH.read_text()


def test_missing_key_names_the_file_and_the_key(tmp_path):
    text = _default_text().replace("steps = 200", "")
    with pytest.raises(ConfigError, match=r"term\.toml: missing key lab1\.steps"):
        config.load(_write(tmp_path, text))


def test_rubric_points_that_do_not_add_up_are_refused(tmp_path):
    text = _default_text().replace('"lab2.b" = { points = 6,', '"lab2.b" = { points = 6, manual = 7,')
    with pytest.raises(ConfigError, match=r"lab2\.b"):
        config.load(_write(tmp_path, text))


def test_unknown_rubric_item_is_refused(tmp_path):
    text = _default_text() + '\n"lab4.a" = { points = 1 }\n'
    with pytest.raises(ConfigError, match=r"unknown item 'lab4\.a'"):
        config.load(_write(tmp_path, text))


def test_q_outside_percent_range_is_refused(tmp_path):
    text = _default_text().replace("q = 70.0 ", "q = 0.7e3 ")
    with pytest.raises(ConfigError, match="percent"):
        config.load(_write(tmp_path, text))


def test_invalid_toml_is_reported_with_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(_write(tmp_path, "[lab1\n"))


def test_environment_overrides_a_grading_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("HW4_GRADING_CALL_TIMEOUT_S", "3.5")
    cfg = config.load(_write(tmp_path, _default_text()))
    assert cfg.grading.call_timeout_s == 3.5


def test_bad_environment_override_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("HW4_GRADING_MEMORY_MB", "lots")
    with pytest.raises(ConfigError, match="HW4_GRADING_MEMORY_MB"):
        config.load(_write(tmp_path, _default_text()))


# ----------------------------------------------------------------------------- terms (issue 11)

TERMS = config.REPO_ROOT / "reference" / "terms"


@pytest.mark.parametrize("term, target, step, symmetric", [
    ("2021F", 80.0, 8.0, False), ("2022F", 80.0, 8.0, False), ("2023F", 70.0, 7.0, True),
    ("2024F", 70.0, 7.0, True), ("2025S", 80.0, 8.0, True),
])
def test_every_term_of_the_course_has_a_config(term, target, step, symmetric):
    """The terms table of the course: target, iterative step, whether the STE has `symmetric`."""
    cfg = config.load(TERMS / f"{term}.toml")
    assert cfg.term == term and cfg.total_points == 100
    assert (cfg.lab2.q, cfg.lab2.iterative_step, cfg.lab2.sparsity_target) == (target, step, target / 100)
    assert cfg.lab2.iterative_step * cfg.lab2.iterative_prune_epochs == target
    assert cfg.lab3.symmetric is symmetric and cfg.lab3.zero_mask_required is symmetric
    assert (cfg.rubric["lab3.e"].points > 0) is symmetric
    # the course's given global line says step 8 in every term; in the 70 % terms both are right
    assert 8.0 in cfg.lab2.global_iterative_steps and step in cfg.lab2.global_iterative_steps


def test_the_default_term_is_2023f():
    default, term = config.load(), config.load(TERMS / "2023F.toml")
    assert (default.lab1, default.lab2, default.lab3, default.rubric) == (term.lab1, term.lab2, term.lab3, term.rubric)


def test_a_term_file_extends_another_and_says_only_what_differs(tmp_path):
    (tmp_path / "base.toml").write_text(_default_text())
    path = _write(tmp_path, '[term]\nextends = "base.toml"\nname = "X"\n[lab2]\nq = 80.0\n')
    cfg = config.load(path)
    assert (cfg.term, cfg.lab2.q, cfg.lab2.iterative_step) == ("X", 80.0, 7.0)
    assert cfg.sources == (path.resolve(), (tmp_path / "base.toml").resolve())


def test_a_term_that_extends_itself_or_a_missing_file_is_refused(tmp_path):
    looped = _write(tmp_path, '[term]\nextends = "term.toml"\n')
    with pytest.raises(ConfigError, match="leads back to itself"):
        config.load(looped)
    (tmp_path / "a.toml").write_text('[term]\nextends = "missing.toml"\n')
    with pytest.raises(ConfigError, match=r"missing\.toml: assignment config not found \(extended by .*a\.toml\)"):
        config.load(tmp_path / "a.toml")


def test_a_term_file_reads_as_one_whole_config_for_the_student_edition():
    """The student edition writes the term's config whole (reference.config.read_merged): a term
    file that extends another must not come out as its few lines and a dangling `extends`."""
    from grader.edition.contents import student_config

    text = student_config(config.read_merged(TERMS / "2022F.toml"))
    assert "extends" not in text
    raw = __import__("tomllib").loads(text)
    assert raw["lab2"]["q"] == 80.0 and raw["lab1"]["steps"] == 200 and raw["lab3"]["symmetric_bits"] == []


def test_a_gradings_threads_come_from_hw4_threads_else_at_most_two(monkeypatch):
    from grader import threads

    monkeypatch.setattr(threads.os, "cpu_count", lambda: 16)
    monkeypatch.delenv(threads.ENV, raising=False)
    assert threads.grading_threads() == 2
    for value, want in (("3", 3), ("0", 2), ("x", 2), ("", 2)):
        monkeypatch.setenv(threads.ENV, value)
        assert threads.grading_threads() == want, value
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 1)
    monkeypatch.delenv(threads.ENV)
    assert threads.grading_threads() == 1
    assert [threads.threads_per_worker(w) for w in (1, 2, 3, 4)] == [1, 1, 1, 1]
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert [threads.threads_per_worker(w) for w in (1, 2, 3, 4)] == [4, 2, 1, 1]
