"""A plain-text table of an evaluation's result, for the terminal."""

from __future__ import annotations

from typing import Any

HEADER = ("candidate", "objective", "estimator", "estimate", "interval", "lift vs logging", "ESS")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _interval(intervals: dict[str, Any]) -> str:
    gaussian = intervals.get("gaussian") or {}
    return f"[{_number(gaussian.get('lower'))}, {_number(gaussian.get('upper'))}]"


def _flat(objectives: dict[str, Any]):
    """(objective label, estimator, cell); ``ccb`` objectives are per slot (``click[slot 0]``)
    and in total (``click[total]``)."""
    for objective, estimators in objectives.items():
        if "slots" in estimators and "total" in estimators:
            for slot, cells in estimators["slots"].items():
                for estimator, cell in cells.items():
                    yield f"{objective}[slot {slot}]", estimator, cell
            for estimator, cell in estimators["total"].items():
                yield f"{objective}[total]", estimator, cell
        else:
            for estimator, cell in estimators.items():
                yield objective, estimator, cell


def _mean(value: Any) -> str:
    if isinstance(value, dict):  # ccb: per slot and total
        slots = ", ".join(f"slot {k} {_number(v)}" for k, v in value["slots"].items())
        return f"{_number(value['total'])} ({slots})"
    return f"{value:.4f}"


def result_table(result: dict[str, Any]) -> str:
    """One row per (candidate, objective, estimator), columns aligned."""
    rows = [HEADER]
    for candidate, objectives in result["candidates"].items():
        for objective, estimator, cell in _flat(objectives):
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
    means = ", ".join(f"{name} {_mean(value)}" for name, value in result["logged_mean"].items())
    level = f"{result['confidence']:.0%}"
    return "\n".join([f"{result['n']:,} decisions; logged mean: {means}; {level} intervals", *lines])
