"""A plain-text table of an evaluation's result, for the terminal."""

from __future__ import annotations

from typing import Any

HEADER = ("candidate", "objective", "estimator", "estimate", "interval", "lift vs logging", "ESS")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _interval(intervals: dict[str, Any]) -> str:
    gaussian = intervals.get("gaussian") or {}
    return f"[{_number(gaussian.get('lower'))}, {_number(gaussian.get('upper'))}]"


def result_table(result: dict[str, Any]) -> str:
    """One row per (candidate, objective, estimator), columns aligned."""
    rows = [HEADER]
    for candidate, objectives in result["candidates"].items():
        for objective, estimators in objectives.items():
            for estimator, cell in estimators.items():
                lift = cell["lift"]
                ess = cell["diagnostics"].get("effective_sample_size")
                rows.append((
                    candidate, objective, estimator, _number(cell["estimate"]),
                    _interval(cell["intervals"]),
                    f"{_number(lift['value'])} {_interval(lift['intervals'])}",
                    "-" if ess is None else f"{ess:,.0f}",
                ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() for row in rows]
    means = ", ".join(f"{name} {value:.4f}" for name, value in result["logged_mean"].items())
    level = f"{result['confidence']:.0%}"
    return "\n".join([f"{result['n']:,} decisions; logged mean: {means}; {level} intervals", *lines])
