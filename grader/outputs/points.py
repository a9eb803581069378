"""How points are written everywhere (CSV, tables, feedback): at most 4 decimals, no trailing zeros."""

from __future__ import annotations

__all__ = ["PARTS", "fmt_points", "part_of"]

#: gradebook parts, in homework order: item id prefix -> label
PARTS = {"tf": "T/F", "lab1": "Lab 1", "lab2": "Lab 2", "lab3": "Lab 3"}


def fmt_points(x: float, digits: int = 4) -> str:
    """``6.0`` -> ``"6"``, ``2.5`` -> ``"2.5"``, ``1/3`` -> ``"0.3333"``; ``-0`` never appears.

    Files keep 4 decimals (sums stay exact to the cent); tables for people use ``digits=2``.
    """
    text = f"{round(float(x), digits):.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def part_of(item: str) -> str:
    return item.split(".", maxsplit=1)[0]
