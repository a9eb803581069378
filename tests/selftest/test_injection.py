"""Student text is inert wherever it lands: feedback, job summaries, terminals, CI logs, CSV sheets.

The attacks (issue 14, items 6-8) and where they are checked:

* **Markup** (``<script>``, ``<img onerror>``, remote images, links, mentions) in messages, warnings,
  file names: ``feedback.md`` and the GitHub job summary are rendered with GitHub's own renderer
  (``cmarkgfm``, raw HTML let through as a careless viewer would) and must hold no tag, link or
  image the text made; ``summary.html`` is parsed and may hold only our own tags.
* **Control characters** (ESC sequences, BEL, C1 CSI, CR, bidi overrides): none in any output.
* **Workflow commands** (``::add-mask::``, ``::stop-commands::``, ``##[error]``): ``hw4grade ci``'s
  log, read the way GitHub's runner reads it, holds no command but our own annotations.
* **Spreadsheet formulas** (OWASP's list, full-width and leading-space variants, a second cell in
  a ``;`` locale): no cell of ``gradebook.csv`` or ``manual.csv`` starts one, and a merge reads
  back exactly what was written.
* **An alias bomb** in ``answers.yaml``: refused, by name, before it expands.

Unit tests use a made-up result full of hostile text; the rest read the session's sample batch
(``fixtures/samples/specs_injection.py``: ``mal_injection_text``, ``mal_yaml_alias_bomb``) and run
``hw4grade ci`` on the injection sample.
"""

from __future__ import annotations

import ast
import base64
import csv
import io
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import cmarkgfm
import pytest
from batch_support import SUBMISSIONS, run_cli
from cmarkgfm.cmark import Options

from fixtures.samples.specs_injection import FORMULAS, HOSTILE
from grader.answers import MAX_DEPTH, MAX_NODES, read_answers
from grader.outputs import ci, escape
from grader.outputs.feedback import feedback_markdown
from grader.outputs.gradebook import gradebook_csv, gradebook_table
from grader.outputs.manual import manual_csv, merge_sheet
from grader.outputs.results_json import gradescope_results, problems
from grader.outputs.selfcheck import render
from grader.outputs.summary import summary_html
from grader.results import CaseResult, build_result
from reference.config import load

CFG = load()
#: the hostile text as the student's code makes it at run time (real control characters)
TEXT = ast.literal_eval(f'"{HOSTILE}"')
BAD_NAME = "<img src=x onerror=alert(1)>\x1b[31m.py"
INJECTION = SUBMISSIONS / "malicious" / "mal_injection_text"
BOMB = SUBMISSIONS / "malicious" / "mal_yaml_alias_bomb"
#: control characters no output may carry (newline and tab are text)
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: the tags our Markdown outputs make themselves (tables, lists, code, <details>)
OUR_TAGS = {"h1", "h2", "h3", "p", "strong", "em", "table", "thead", "tbody", "tr", "th", "td", "ul", "li",
            "pre", "code", "details", "summary", "br"}


def hostile_result(student: str = "mallory"):
    cases = [
        CaseResult("test_lab1a_loss_on_the_homework_data", "lab1.a", "function", "public", 1.0, "failed", 0.0,
                   doc="loss(W, X, y) on the homework data.", message=f"loss raised ValueError: {TEXT}",
                   fault="student"),
        CaseResult("test_lab1a_gradient_on_the_homework_data", "lab1.a", "function", "public", 1.0, "passed", 1.0),
        CaseResult("test_lab1a_hidden", "lab1.a", "function", "hidden", 1.0, "failed", 0.0,
                   message=f"hidden: {TEXT}", fault="student"),
        CaseResult("test_lab2a_notebook", "lab2.a", "notebook", "public", 1.0, "not run", 0.0, message=TEXT),
    ]
    return build_result(
        student, CFG, cases, mode="public", isolation="bwrap (test)",
        warnings=[f"while loading: {BAD_NAME}, module, line 4: RuntimeError: {TEXT}"],
        found=[f"loss: {BAD_NAME}, line 3", f"STE: not found ({TEXT})", f"gradient: {BAD_NAME}, line 9"],
    )


# ----------------------------------------------------------------------------- checkers


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse_html(text: str) -> _Tags:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    return parser


def assert_markdown_inert(markdown: str) -> str:
    """Render ``markdown`` as GitHub does (raw HTML kept, as a careless viewer would) and check
    it holds only our own tags, with no link, image, or attribute; return the rendered text."""
    assert not CONTROL.search(markdown), repr(CONTROL.search(markdown))
    rendered = cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    page = parse_html(rendered)
    foreign = [(tag, attrs) for tag, attrs in page.tags if tag not in OUR_TAGS]
    assert foreign == [], foreign
    attributes = [(tag, attrs) for tag, attrs in page.tags if set(attrs) - {"align", "class"}]
    assert attributes == [], attributes
    return "".join(page.text)


def assert_html_page_inert(text: str) -> None:
    assert not CONTROL.search(text)
    page = parse_html(text)
    assert not [t for t, _ in page.tags if t in {"script", "iframe", "object", "embed", "svg", "base", "form"}]
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "img":
            # our charts (grader/outputs/charts.py): SVG data with no script, link or handler in it
            # (an <img> never runs one anyway)
            prefix = "data:image/svg+xml;base64,"
            assert attrs["src"].startswith(prefix), attrs["src"][:80]
            svg = base64.b64decode(attrs["src"][len(prefix):]).decode()
            assert not re.search(r"<script|<foreignObject|href|\son\w+=|javascript:", svg, re.I), svg[:200]
        if tag == "a":
            assert not re.match(r"[a-z]+:", attrs["href"]), attrs["href"]  # relative links only


def runner_commands(log: str) -> list[str]:
    """The lines GitHub's runner would act on as workflow commands, read as
    actions/runner's ActionCommandManager reads them: ``::name ...::data`` after leading
    whitespace, or ``##[name ...]data`` anywhere in a line; after ``::stop-commands::TOKEN`` no
    command acts until one named TOKEN. (Stricter than the runner: every name counts, and
    Python's splitlines() breaks at more characters than .NET's ReadLine.)"""
    acted, token = [], None
    for text in log.splitlines():
        name, data = None, ""
        stripped = text.lstrip()
        if stripped.startswith("::") and (end := stripped.find("::", 2)) >= 0:
            name, data = stripped[2:end].split(" ", 1)[0], stripped[end + 2:]
        elif (start := text.find("##[")) >= 0 and (end := text.find("]", start)) >= 0:
            name, data = text[start + 3:end].split(" ", 1)[0], text[end + 1:]
        if name is None:
            continue
        if token is not None:
            if name.lower() == token.lower():
                token = None
            continue
        if name.lower() == "stop-commands":
            token = data
            continue
        acted.append(text)
    return acted


def strings(data) -> list[str]:
    """Every string in a JSON document."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for k, v in data.items() for s in (*strings(k), *strings(v))]
    if isinstance(data, list):
        return [s for v in data for s in strings(v)]
    return []


def formula_like(cell: str) -> bool:
    """Would a spreadsheet read this cell as a formula (OWASP's list, full-width forms, after
    leading whitespace)?"""
    return cell[:1] in ("\t", "\r") or cell.lstrip()[:1] in set("=+-@＝＋－＠﹦﹢﹣﹫")


def assert_csv_inert(text: str) -> list[list[str]]:
    """No cell of ``text`` starts a formula, read with ``,`` (ours) or ``;`` or TAB (what a
    spreadsheet in another locale would use); return the rows read with ``,``."""
    assert not CONTROL.search(text.replace("\t", ""))
    for delimiter in (",", ";", "\t"):
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
        bad = [cell for row in rows for cell in row if formula_like(cell)]
        assert bad == [], f"delimiter {delimiter!r}: {bad[:5]}"
    return list(csv.reader(io.StringIO(text)))


# ----------------------------------------------------------------------------- the escaping rules


@pytest.mark.parametrize("value", [*FORMULAS, "-bob", "+1", "@x", "\r=1", "\n=1", "''=x", "'plain", "2.5",
                                   "alice", "", "=1\n=2", " \u3000=1", "﹦1"])
def test_a_csv_cell_is_inert_and_reads_back_as_written(value):
    cell = escape.csv_cell(value)
    assert not formula_like(cell)
    assert escape.csv_value(cell) == escape.plain(value)
    row = escape.csv_row(["a", value, "b"])
    assert next(csv.reader(io.StringIO(row))) == ["a", cell, "b"]


def test_code_spans_and_blocks_cannot_be_closed_by_the_text_inside():
    for text in ["`", "``x``", "a ``` b", "```\n</details>\n```", "| a | b |"]:
        rendered = cmarkgfm.github_flavored_markdown_to_html(f"| h |\n|---|\n| {escape.md_cell(text)} |\n\n"
                                                             + "\n".join(escape.md_block(text)))
        page = parse_html(rendered)
        assert [t for t, _ in page.tags].count("code") == 2, rendered
        assert all(t in OUR_TAGS for t, _ in page.tags), rendered


# ----------------------------------------------------------------------------- outputs (made-up result)


def test_feedback_renders_no_markup_link_or_image_of_the_students_text():
    markdown = feedback_markdown(hostile_result(), CFG)
    text = assert_markdown_inert(markdown)
    # the text is shown (as text), not dropped: the student must see their message
    assert "<script>alert('hw4')</script>" in text and "onerror=alert(1)" in text
    assert "::add-mask::hw4" in text and BAD_NAME.replace("\x1b", "") in text


def test_the_job_summary_renders_no_markup_link_or_image_of_the_students_text():
    text = assert_markdown_inert(ci.step_summary(hostile_result()))
    assert "<script>alert('hw4')</script>" in text


def test_the_ci_log_acts_on_no_command_but_our_annotations():
    result = hostile_result()
    report = render(result, "<b>.</b>\x1b[2J")
    log = ci.stdout_text(report, result)
    acted = runner_commands(log)
    assert acted == ci.workflow_commands(result)
    assert acted and all(c.startswith(("::error title=", "::warning title=")) for c in acted)
    assert "::add-mask::hw4" in log  # shown, inert
    assert not CONTROL.search(log)


def test_terminal_outputs_carry_no_control_characters():
    result = hostile_result("x\x1b[2Jy")
    for text in (render(result, "dir\x1b]0;t\x07"), gradebook_table([result])):
        assert not CONTROL.search(text), repr(CONTROL.search(text))
    assert "ValueError: HW4-INJECT" in render(result, ".")


def test_the_where_to_start_guide_shows_file_names_without_control_characters():
    """An untouched template gets a guide naming the files to edit: the names are student text."""
    cases = [CaseResult(f"test_{item}", item, "function", "public", 1.0, "failed", 0.0,
                        message="NotImplementedError: your code here", fault="student")
             for item in ("lab1.a", "lab1.b", "lab2.b")]
    found = [f"loss: {BAD_NAME}, line 3", f"run_gd: {BAD_NAME}, line 9", "prune_by_percentage: not found"]
    result = build_result("mallory", CFG, cases, mode="public", found=found)
    text = render(result, ".")
    assert "Start here" in text and "<img src=x onerror=alert(1)>[31m.py: loss" in text
    assert not CONTROL.search(text)


def test_hw4grade_grade_prints_no_control_characters(monkeypatch, tmp_path, capsys):
    """The batch's warnings quote folder and file names from the submissions."""
    import grader.batch
    from grader import cli
    from grader.batch import BatchReport

    def fake_run_batch(submissions, out, options, **kw):
        return BatchReport(Path(out), ["mallory"], graded=["mallory"], results=[hostile_result()],
                           warnings=[f"{BAD_NAME}: a stray file at the top level, ignored", TEXT])

    monkeypatch.setattr(grader.batch, "run_batch", fake_run_batch)
    assert cli.main(["grade", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr()
    assert "warning: <img src=x onerror=alert(1)>[31m.py: a stray file" in printed.err
    assert not CONTROL.search(printed.out + printed.err), repr(printed.err)


def test_results_json_carries_no_control_characters_and_stays_valid():
    data = gradescope_results(hostile_result(), CFG)
    assert problems(data) == []
    assert [s for s in strings(data) if CONTROL.search(s)] == []
    assert any("HW4-INJECT" in s for s in strings(data))


def test_summary_html_holds_only_our_own_tags():
    result = hostile_result()
    page = summary_html([result, hostile_result("bob")], CFG, warnings=[f"{BAD_NAME}: {TEXT}"])
    assert_html_page_inert(page)
    assert "&lt;script&gt;" in page


# ----------------------------------------------------------------------------- CSV sheets


def test_gradebook_cells_are_inert_even_for_an_id_starting_with_a_sign():
    """The batch never makes such ids (sanitize_id); the gradebook still writes them as text."""
    results = [hostile_result(s) for s in ("-2+3", "=1+1", "@SUM(A1)", "+x", "alice")]
    rows = assert_csv_inert(gradebook_csv(results))
    assert [escape.csv_value(r[0]) for r in rows[1:]] == ["-2+3", "=1+1", "@SUM(A1)", "+x", "alice"]


def test_no_student_id_the_batch_makes_starts_with_a_sign(tmp_path):
    """Folder and zip names become ids: none may start a gradebook row with = + - @."""
    from grader.batch import collect

    names = ["-2+3", "--rf", "=cmd|' calc'!A0", "@SUM(A1)", "+x", "-", "＝1+1"]
    for name in names:
        (tmp_path / "subs" / name).mkdir(parents=True)
        (tmp_path / "subs" / name / "lab1.py").write_text("x = 1\n")
    ids = [s.student for s in collect(tmp_path / "subs", tmp_path / "work", "flat").sources]
    assert len(ids) == len(names) and not [i for i in ids if formula_like(i)], ids


def test_the_manual_sheet_is_inert_and_a_merge_reads_back_what_it_wrote(tmp_path):
    students = ["-mallory", "alice"]
    results = [hostile_result(s) for s in students]
    answers = {s: {"choices": {}, "explanations": {f"1.{n}": f for n, f in enumerate(FORMULAS, 1)}}
               for s in students}
    sheet = manual_csv(results, answers, CFG, {})
    rows = assert_csv_inert(sheet)
    header = rows[0]
    shown = [escape.csv_value(r[header.index("student_answer")]) for r in rows[1:] if r[1] == "tf.1"]
    assert shown == [FORMULAS[0]] * 2
    # A person fills points and comments that start like formulas, and saves the sheet.
    comments = {"tf.1": "=good", "tf.2": "-0.5: the sign", "tf.3": "'quoted'", "tf.4": " +lead", "lab1.a": "@TA"}
    filled = io.StringIO()
    writer = csv.writer(filled, lineterminator="\n")
    writer.writerow(header)
    for row in rows[1:]:
        if row[1] in comments:
            row[header.index("points")] = "1"
            row[header.index("comment")] = escape.csv_cell(comments[row[1]])  # as the sheet showed it
        writer.writerow(row)
    path = tmp_path / "manual.csv"
    path.write_text(filled.getvalue())
    scores, report = merge_sheet(path, students, CFG, {})
    assert report.merged == 2 * len(comments)
    assert {s: {i: e["comment"] for i, e in items.items()} for s, items in scores.items()} == {
        s: {i: c.strip() for i, c in comments.items()} for s in students}
    # The regenerated sheet carries the merged scores, inert; merging it again changes nothing.
    again = manual_csv(results, answers, CFG, scores)
    assert_csv_inert(again)
    path.write_text(again)
    assert merge_sheet(path, students, CFG, scores)[0] == scores


# ----------------------------------------------------------------------------- answers.yaml


def test_an_alias_bomb_is_refused_by_name_without_expanding(tmp_path):
    shutil.copy(BOMB / "answers.yaml", tmp_path / "answers.yaml")
    answers = read_answers(tmp_path)
    assert answers.refused is not None
    assert answers.refused.startswith("answers.yaml: not read: it uses a YAML alias (*a0")
    assert answers.choices == {} and answers.explanations == {}


@pytest.mark.parametrize("text, why", [
    ("x: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5), "levels deep"),
    ("x: " + "[" * 5000 + "]" * 5000, "levels deep"),  # the composer would recurse past Python's limit
    ("x: [" + ", ".join(["1"] * (MAX_NODES + 1)) + "]", f"more than {MAX_NODES} values"),
    ("x: " + "1" * 5000, "not valid YAML"),  # an integer Python refuses to convert
    ("x: 2001-13-45 10:00:00", "not valid YAML"),
    ('"1.1": T\n' + "#" * (64 << 10), "larger than 64 KB"),
])
def test_an_answers_file_past_a_bound_is_refused_by_name(tmp_path, text, why):
    (tmp_path / "answers.yaml").write_text(text)
    answers = read_answers(tmp_path)
    assert answers.refused is not None and answers.refused.startswith("answers.yaml: not read: ")
    assert why in answers.refused and answers.choices == {}


def test_an_ordinary_answers_file_is_read_as_before(tmp_path):
    (tmp_path / "answers.yaml").write_text('"1.1": {choice: T, explanation: &e "because"}\n1.2: False\n')
    answers = read_answers(tmp_path)
    assert answers.refused is None
    assert answers.choices == {"1.1": "T", "1.2": "F"} and answers.explanations == {"1.1": "because"}


# ----------------------------------------------------------------------------- the sample batch


def test_the_injection_samples_outputs_are_inert(sample_batch):
    student = sample_batch.student_for(INJECTION)
    markdown = (sample_batch.out / student / "feedback.md").read_text()
    text = assert_markdown_inert(markdown)
    assert "HW4-INJECT" in text and "notes.py" in text  # the load error and the failure are shown
    data = sample_batch.results_json(student)
    assert problems(data) == []
    assert [s for s in strings(data) if CONTROL.search(s)] == []
    assert_html_page_inert((sample_batch.out / "summary.html").read_text())
    assert not CONTROL.search(sample_batch.stdout + sample_batch.stderr)


def test_the_batchs_csv_sheets_are_inert_and_keep_the_students_text(sample_batch):
    assert_csv_inert((sample_batch.out / "gradebook.csv").read_text())
    rows = assert_csv_inert((sample_batch.out / "manual.csv").read_text())
    header = rows[0]
    student = sample_batch.student_for(INJECTION)
    answers = [escape.csv_value(r[header.index("student_answer")]) for r in rows[1:]
               if r[0] == student and r[1].startswith("tf.")]
    assert answers == [escape.plain(f) for f in FORMULAS]


def test_the_alias_bomb_sample_is_refused_with_a_warning_naming_the_file(sample_batch):
    result = sample_batch.result(sample_batch.student_for(BOMB))
    assert any(w.startswith("answers.yaml: not read: it uses a YAML alias") for w in result.warnings)


@pytest.mark.slow
def test_hw4grade_ci_on_the_injection_sample_logs_no_command_and_no_markup(tmp_path):
    repo = tmp_path / "hw4-mallory"
    shutil.copytree(INJECTION, repo)
    summary = tmp_path / "summary.md"
    proc = run_cli("ci", ".", cwd=repo, env={"GITHUB_STEP_SUMMARY": str(summary),
                                             "GITHUB_REPOSITORY": "course/hw4-mallory"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    acted = runner_commands(proc.stdout) + runner_commands(proc.stderr)
    assert acted and all(c.startswith(("::error title=", "::warning title=")) for c in acted), acted
    assert any(c.startswith("::error title=lab1.a%3A") for c in acted)
    assert "::add-mask::hw4" in proc.stdout  # the student's text is shown, inert
    assert not CONTROL.search(proc.stdout + proc.stderr)
    assert "HW4-INJECT" in assert_markdown_inert(summary.read_text())
    assert_markdown_inert((repo / "hw4-results" / "feedback.md").read_text())
