"""``summary.html``: the class at a glance, one self-contained page (no scripts, no network).

Plots (SVG drawn by ``grader.outputs.charts``, inlined as data URIs): the distribution of
automatic scores, the pass rate per item (full / partial / no points, counting only the tests this
run executed), and the most common failing test of each item. Tables: per
item statistics with the most common failure and its usual message, every student with links to
their feedback, grader errors, and the batch's warnings. The page holds no timings or dates, so
the same results always give the same bytes. Every text goes in through
``grader.outputs.escape.html_text`` (student ids, messages and warnings are student-derived).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from grader.outputs import charts
from grader.outputs.escape import html_text
from grader.outputs.points import fmt_points
from grader.results import STATUS_NOT_RUN, SubmissionResult
from reference.config import ITEM_IDS, Config

__all__ = ["ItemStats", "item_stats", "summary_html"]


@dataclass
class ItemStats:
    item: str
    title: str
    possible: float
    mean: float
    full: int  # students with every automatic point of the item
    partial: int
    none: int
    top_failure: str | None  # the test most students failed
    top_failure_count: int
    top_message: str  # that test's most common first line of feedback

    @property
    def graded(self) -> int:
        return self.full + self.partial + self.none

    @property
    def pass_rate(self) -> float:
        return self.full / self.graded if self.graded else 0.0


def item_stats(results: list[SubmissionResult], cfg: Config) -> list[ItemStats]:
    graded = [r for r in results if not r.grader_error]
    out = []
    for item in ITEM_IDS:
        its = [r.items[item] for r in graded]
        # Only what this run graded: with --no-notebooks, an item's notebook checks are "not run"
        # and would otherwise make every student look partly failed on it.
        ran = [[c for c in i.cases if c.status != STATUS_NOT_RUN] for i in its]
        possible = max((sum(c.max_score for c in cases) for cases in ran), default=0.0)
        if possible <= 0:
            continue
        earned = [sum(c.score for c in cases) for cases in ran]
        full = sum(e >= possible - 1e-6 for e in earned)
        none = sum(e <= 1e-6 for e in earned)
        failures: Counter[str] = Counter()
        messages: dict[str, Counter[str]] = {}
        for it in its:
            for case in it.cases:
                if case.passed or case.status == STATUS_NOT_RUN:
                    continue
                failures[case.name] += 1
                first = (case.message.strip().splitlines() or [case.status])[0][:160]
                messages.setdefault(case.name, Counter())[first] += 1
        # Ties broken by name so the page does not depend on dict order.
        top = min(failures.items(), key=lambda kv: (-kv[1], kv[0])) if failures else None
        out.append(
            ItemStats(
                item=item,
                title=cfg.rubric[item].title,
                possible=possible,
                mean=sum(earned) / len(earned),
                full=full,
                partial=len(its) - full - none,
                none=none,
                top_failure=top[0] if top else None,
                top_failure_count=top[1] if top else 0,
                top_message=min(messages[top[0]].items(), key=lambda kv: (-kv[1], kv[0]))[0] if top else "",
            )
        )
    return out


def summary_html(results: list[SubmissionResult], cfg: Config, warnings: Sequence[str] = ()) -> str:
    graded = [r for r in results if not r.grader_error]
    stats = item_stats(results, cfg)
    possible = max((r.possible for r in graded), default=0.0)
    totals = [r.score for r in graded]
    e = html_text
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(cfg.title)}: class summary</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.25em .6em;overflow-wrap:anywhere;"
        "text-align:left;vertical-align:top}th{background:#f3f3f3}td.n{text-align:right}"
        "img{max-width:100%;display:block;margin:1em 0}.err{color:#a00}"
        "td.msg{max-width:28em;overflow-wrap:anywhere}</style></head><body>",
        f"<h1>{e(cfg.title)}: class summary</h1>",
        f"<p>{len(results)} submissions; {len(graded)} graded"
        + (
            f", <span class=err>{len(results) - len(graded)} with grader errors</span>"
            if len(graded) < len(results)
            else ""
        )
        + (
            f". Automatic points: mean {fmt_points(_mean(totals), 2)}, "
            f"median {fmt_points(_median(totals), 2)} of {fmt_points(possible, 2)}"
            if totals
            else ""
        )
        + ".</p>",
    ]
    if graded:
        histogram = charts.histogram_chart(totals, possible)
        parts += ["<h2>Score distribution</h2>", charts.img(histogram, "score distribution")]
    if stats:
        parts += ["<h2>Pass rate per item</h2>", charts.img(_pass_rates(stats), "pass rate per item")]
        if any(s.top_failure for s in stats):
            parts += [
                "<h2>Most common failure per item</h2>",
                charts.img(_failures(stats), "most common failure per item"),
            ]
        parts += [
            "<table><tr><th>item</th><th>title</th><th>mean</th><th>possible</th><th>full</th>"
            "<th>partial</th><th>none</th><th>most common failure</th><th>students</th>"
            "<th>usual message</th></tr>"
        ]
        for s in stats:
            parts.append(
                f"<tr><td>{e(s.item)}</td><td>{e(s.title)}</td><td class=n>{fmt_points(s.mean, 2)}</td>"
                f"<td class=n>{fmt_points(s.possible, 2)}</td><td class=n>{s.full}</td>"
                f"<td class=n>{s.partial}</td>"
                f"<td class=n>{s.none}</td><td>{e(s.top_failure or '')}</td>"
                f"<td class=n>{s.top_failure_count or ''}</td><td class=msg>{e(s.top_message)}</td></tr>"
            )
        parts.append("</table>")
    parts += [
        "<h2>Students</h2>",
        "<table><tr><th>student</th><th>automatic</th><th>by hand</th><th>notes</th><th>files</th></tr>",
    ]
    for r in results:
        if r.grader_error:
            cells = (
                "<td class=n></td><td class=n></td><td class=err>grader error: see "
                f'<a href="grader-errors/{e(r.student)}.txt">grader-errors/{e(r.student)}.txt</a></td>'
            )
        else:
            errors = sum(c.fault == "grader" for c in r.cases())
            note = f"<span class=err>{errors} test(s) failed in the grader</span>" if errors else ""
            note += f" {len(r.warnings)} warning(s)" if r.warnings else ""
            cells = (
                f"<td class=n>{fmt_points(r.score, 2)}</td><td class=n>{fmt_points(r.manual_score, 2)}</td>"
                f"<td>{note.strip()}</td>"
            )
        parts.append(
            f'<tr><td>{e(r.student)}</td>{cells}<td><a href="{e(r.student)}/feedback.md">feedback</a> '
            f'<a href="{e(r.student)}/results.json">results</a></td></tr>'
        )
    parts.append("</table>")
    if warnings:
        parts += ["<h2>Batch warnings</h2>", "<ul>", *(f"<li>{e(w)}</li>" for w in warnings), "</ul>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return 0.0 if not n else (s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2)


def _pass_rates(stats: list[ItemStats]) -> str:
    n = [max(s.graded, 1) for s in stats]
    return charts.pass_rate_chart([s.item for s in stats], [s.full / k for s, k in zip(stats, n, strict=True)],
                                  [s.partial / k for s, k in zip(stats, n, strict=True)],
                                  [s.none / k for s, k in zip(stats, n, strict=True)])


def _failures(stats: list[ItemStats]) -> str:
    rows = [s for s in stats if s.top_failure]
    return charts.failures_chart([f"{s.item}: {_short(s.top_failure or '')}" for s in rows],
                                 [s.top_failure_count for s in rows])


def _short(name: str, n: int = 60) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"
