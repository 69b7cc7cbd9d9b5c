"""Plain-text tables of an evaluation's and a tuning's result, for the terminal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HEADER = ("candidate", "objective", "estimator", "estimate", "interval", "lift vs logging", "ESS")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def shown_interval(intervals: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The interval a result's tables show: the skew-corrected one (the Gaussian one in results
    made before it existed); empty when there is none."""
    intervals = intervals or {}
    return intervals.get("skew_corrected") or intervals.get("gaussian") or {}


def _interval(intervals: dict[str, Any]) -> str:
    found = shown_interval(intervals)
    return f"[{_number(found.get('lower'))}, {_number(found.get('upper'))}]"


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
    lines = _aligned(rows)
    means = ", ".join(f"{name} {_mean(value)}" for name, value in result["logged_mean"].items())
    level = f"{result['confidence']:.0%}"
    return "\n".join([f"{result['n']:,} decisions; logged mean: {means}; {level} intervals", *lines])


def _aligned(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() for row in rows]


def _weights(weights: dict[str, float]) -> str:
    return " ".join(f"{name}={value:g}" for name, value in weights.items())


def _estimate(cell: dict[str, Any]) -> str:
    low, high = cell["interval"]
    return f"{_number(cell['estimate'])} [{_number(low)}, {_number(high)}]"


def tuning_table(result: dict[str, Any]) -> str:
    """The run, the recommendation (with its holdout estimates) and the distinct policies on the
    Pareto front, with the current weights (``same``: how many candidates gave that policy's
    very estimates)."""
    run, recommendation = result["run"], result["recommendation"]
    events = run["events"]
    primary = result["primary"]
    guardrails = [g["objective"] for g in result["guardrails"]]
    lines = [
        f"{events['window']:,} decisions: fit {events['fit']:,} (models on {events['fit_used']:,}), "
        f"tune {events['tune']:,}, holdout {events['holdout']:,}; {len(result['candidates'])} "
        f"candidates; {result['confidence']:.0%} intervals; exploration "
        f"{run['exploration']['algorithm']} {run['exploration']['parameter']:g}",
        f"recommendation: {recommendation['action']} {_weights(recommendation['weights'])}",
        f"  {recommendation['reason']}",
    ]
    holdout = recommendation["holdout"]
    for objective, cells in holdout["objectives"].items():
        check = holdout["guardrails"].get(objective)
        verdict = "" if check is None else f"  guardrail {'passes' if check['passes'] else 'FAILS'}"
        lines.append(f"  holdout {objective}: DR {_estimate(cells['dr'])}, lift "
                     f"{_number(cells['dr']['lift'])}{verdict}")
    header = ("id", "source", "weights", f"{primary} (DR)",
              *(f"{g} lift (bound/allowed)" for g in guardrails), "passes", "pareto", "ESS", "same")
    shown: dict[tuple, list] = {}
    for candidate in result["candidates"]:
        key = tuple(cells["dr"]["estimate"] for cells in candidate["objectives"].values())
        if key in shown:
            shown[key][1] += 1
            if candidate["id"] == recommendation.get("candidate"):
                shown[key][0] = candidate
        elif (candidate["pareto"] or candidate["source"] == "current"
              or candidate["id"] == recommendation.get("candidate")):
            shown[key] = [candidate, 1]
    rows = [header]
    for candidate, same in shown.values():
        checks = candidate["guardrails"]
        rows.append((
            str(candidate["id"]), candidate["source"], _weights(candidate["weights"]),
            _estimate(candidate["objectives"][primary]["dr"]),
            *(f"{_number(checks[g]['lift'])} ({_number(checks[g]['bound'])}/{_number(checks[g]['allowed'])})"
              for g in guardrails),
            "yes" if candidate["passes"] else "no", "yes" if candidate["pareto"] else "no",
            f"{candidate['effective_sample_size']:,.0f}", str(same),
        ))
    return "\n".join([*lines, "", *_aligned(rows)])
