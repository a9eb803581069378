"""How student-derived text is made inert in every output: one rule per kind of place it lands.

Student text is anything a submission controls: its exception and failure messages, its file and
folder names, its ``answers.yaml`` explanations, what it prints, the found-locations of its
functions, the warnings about it. Every output module (``grader/outputs/*``, the batch's terminal
lines) puts such text through exactly one of these functions where it inserts it; our own text
(test docstrings, rubric titles, the config) needs none.

==========================  ==================  =================================================
where it lands              function            what it guarantees
==========================  ==================  =================================================
terminal, plain-text files  :func:`plain`       no control characters (ESC, BEL, CR, C1, bidi
(results.json, ``check``)                       overrides); newlines and tabs kept
a one-line slot             :func:`line`        :func:`plain`, and all whitespace runs -> one
(table cell, progress)                          space: it cannot forge a line of its own
Markdown, inline            :func:`md_code`     a code span: no HTML, link, image, autolink,
                                                mention or emphasis renders inside one
Markdown table cell         :func:`md_cell`     :func:`md_code` with ``|`` escaped (GFM tables)
Markdown, several lines     :func:`md_block`    a fenced code block longer than any backtick
                                                run inside, so the text cannot close it
HTML (``summary.html``,     :func:`html_text`   :func:`plain`, then ``& < > " '`` escaped
``<summary>``)
a CSV cell                  :func:`csv_cell`    OWASP's rule: text a spreadsheet could read as
                                                a formula gets a leading ``'`` (also after a
                                                ``;``, TAB or newline inside the cell)
a CSV row                   :func:`csv_row`     :func:`csv_cell` for each cell, quoted when it
                                                holds any delimiter a spreadsheet may use
reading a CSV cell back     :func:`csv_value`   the exact inverse of :func:`csv_cell`
a workflow command's data   :func:`gh_data`     GitHub's escaping (``%``, CR, LF)
a workflow command property :func:`gh_property` GitHub's escaping (also ``:`` and ``,``)
GitHub Actions log text     :func:`gh_inert`    wrapped in ``::stop-commands::<token>`` ...
                                                ``::<token>::`` with a fresh random token: no
                                                line inside acts as a workflow command
==========================  ==================  =================================================

Why code spans rather than backslash escapes for Markdown: GitHub's renderer turns bare
``https://...`` and ``www.`` text into links (its autolink extension) even where the punctuation
is escaped, and renders ``@name`` as a mention; inside a code span nothing renders.

>>> plain("red\\x1b[31m!\\x07 done\\r\\n")
'red[31m! done\\n'
>>> md_code("<img src=x onerror=alert(1)> `a`")
'`` <img src=x onerror=alert(1)> `a` ``'
>>> csv_cell("=HYPERLINK(\\"http://x\\")"), csv_value("'=HYPERLINK(\\"http://x\\")")
('\\'=HYPERLINK("http://x")', '=HYPERLINK("http://x")')
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterable

__all__ = [
    "FORMULA_START",
    "csv_cell",
    "csv_row",
    "csv_value",
    "gh_data",
    "gh_inert",
    "gh_property",
    "html_text",
    "line",
    "md_block",
    "md_cell",
    "md_code",
    "plain",
]

# C0 controls except TAB and LF, DEL, C1 controls (0x80-0x9f: 0x9b is a one-byte CSI on some
# terminals), and the bidirectional overrides and isolates that reorder what a reader sees.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Line breaks in all their spellings: CR alone moves a terminal's cursor back over the line.
_NEWLINES = re.compile("\r\n|[\r\u2028\u2029\x85]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # undecodable bytes of a file name (surrogateescape)
_BACKTICKS = re.compile("`+")
# Quote a cell holding any delimiter a spreadsheet may pick (a ";" locale splits "a;=b" in two
# cells otherwise, and the second one starts with "="), a quote, a line break, or edge spaces.
# Where a spreadsheet in another locale may start a new cell or row inside our quoted cell.
_CELL_BREAK = re.compile("([;\t\n])")
_CSV_QUOTED = re.compile(r'[",;\t\n]|^\s|\s$')

#: what makes a spreadsheet (Excel, LibreOffice, Google Sheets) read a cell as a formula or a
#: DDE command, per OWASP's "CSV injection": ``= + - @``, and their full-width and small forms
#: (East Asian input methods type them; some spreadsheets normalise them to ASCII)
FORMULA_START = frozenset("=+-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b")


def plain(text: object) -> str:
    """``text`` with every control character removed; line breaks become ``\\n``.

    Kept: newlines and tabs (the only controls a text file needs). Undecodable bytes (lone
    surrogates from a file name) become U+FFFD, so the text can always be written as UTF-8.
    """
    if text is None:
        return ""
    s = _NEWLINES.sub("\n", str(text))
    s = _SURROGATE.sub("\ufffd", s)
    return _CONTROL.sub("", s)


def line(text: object) -> str:
    """:func:`plain` on one line: every run of whitespace (newlines included) is one space."""
    return " ".join(plain(text).split())


def md_code(text: object) -> str:
    """An inline Markdown code span holding ``text`` on one line (empty text: ``""``).

    The delimiter is one backtick longer than the longest run inside, padded with a space when
    the text starts or ends with a backtick (CommonMark strips that one space again).
    """
    s = line(text)
    if not s:
        return ""
    longest = max((len(m) for m in _BACKTICKS.findall(s)), default=0)
    tick = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{tick}{pad}{s}{pad}{tick}"


def md_cell(text: object) -> str:
    """:func:`md_code` for a GFM table cell: a ``|`` inside would end the cell, even in code."""
    return md_code(text).replace("|", "\\|")


def md_block(text: object, indent: str = "") -> list[str]:
    """``text`` as the lines of a fenced code block (each prefixed with ``indent``, e.g. to sit
    in a list item). The fence is longer than any backtick run inside: the text cannot close it."""
    s = plain(text)
    longest = max((len(m) for m in _BACKTICKS.findall(s)), default=0)
    fence = "`" * max(3, longest + 1)
    return [indent + fence, *(indent + ln for ln in s.splitlines()), indent + fence]


def html_text(text: object) -> str:
    """``text`` for HTML element content or a quoted attribute value."""
    return html.escape(plain(text), quote=True)


def _formula_like(s: str) -> bool:
    # Leading quotes are looked through so that csv_value can undo csv_cell exactly (a text
    # that itself starts with "'=" must come back with its quote).
    t = s.lstrip("'")
    if t[:1] in ("\t", "\r"):
        return True
    return t.lstrip()[:1] in FORMULA_START


def csv_cell(value: object) -> str:
    """A CSV cell that no spreadsheet runs: ``'`` before text that would start a formula.

    OWASP's rule (cells starting with ``=``, ``+``, ``-``, ``@``, TAB or CR), extended to
    full-width and small forms of those signs and to the same signs after leading whitespace.
    The same holds after every ``;``, TAB and newline inside the text: a spreadsheet whose locale
    splits on ``;`` (or TAB) ignores our quoting when it opens our comma-separated file and starts
    a new cell (or row) there. Control characters other than newline and TAB are removed first.
    Numbers we write (points, never negative) are unchanged; :func:`csv_value` reads any cell
    back to ``value``.

    >>> csv_cell("-bob"), csv_cell(" =1+1"), csv_cell("2.5"), csv_cell("'=x"), csv_cell("ok;=1")
    ("'-bob", "' =1+1", '2.5', "''=x", "ok;'=1")
    """
    parts = _CELL_BREAK.split(plain(value))
    for i in range(2, len(parts), 2):  # the pieces after a break; the cell's start is below
        if _formula_like(parts[i]):
            parts[i] = "'" + parts[i]
    s = "".join(parts)
    return "'" + s if _formula_like(s) else s


def csv_value(cell: str) -> str:
    """The text :func:`csv_cell` was given: the ``'`` it added are removed, nothing else.

    A cell a person typed (``2``, ``alice``, a comment) is returned as it is.
    """
    if cell.startswith("'") and _formula_like(cell[1:]):
        cell = cell[1:]
    parts = _CELL_BREAK.split(cell)
    for i in range(2, len(parts), 2):
        if parts[i].startswith("'") and _formula_like(parts[i][1:]):
            parts[i] = parts[i][1:]
    return "".join(parts)


def csv_row(cells: Iterable[object]) -> str:
    r"""One CSV line (``\n``-terminated, comma-separated) of :func:`csv_cell` cells. A cell is
    quoted when it holds a comma, semicolon, TAB, quote, newline or edge space, so every
    spreadsheet, whatever delimiter its locale uses, reads it as one cell; other cells (ids,
    numbers) stay bare. Python's ``csv`` module reads the line back.

    >>> csv_row(["alice", "2", 'ok; =cmd|"/C calc"!A0', "-1"])
    'alice,2,"ok;\' =cmd|""/C calc""!A0",\'-1\n'
    """
    out = []
    for value in cells:
        s = csv_cell(value)
        out.append('"' + s.replace('"', '""') + '"' if _CSV_QUOTED.search(s) else s)
    return ",".join(out) + "\n"


def gh_data(text: object) -> str:
    """A workflow command's message, escaped as ``@actions/core`` does (``%``, CR, LF)."""
    return plain(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def gh_property(text: object) -> str:
    """A workflow command's property value (``title=...``): also ``:`` and ``,``."""
    return gh_data(text).replace(":", "%3A").replace(",", "%2C")


def gh_inert(text: str) -> str:
    """``text`` for a GitHub Actions log, with no line of it acting as a workflow command.

    The runner stops reading commands after ``::stop-commands::TOKEN`` until a line
    ``::TOKEN::``; the token is fresh and random per call, made after the student's code ran, so
    the text cannot guess it. Both command syntaxes (``::cmd::`` and ``##[cmd]``) are stopped.
    """
    token = f"hw4grade-{secrets.token_hex(16)}"
    body = plain(text)
    if body and not body.endswith("\n"):
        body += "\n"
    return f"::stop-commands::{token}\n{body}::{token}::\n"
