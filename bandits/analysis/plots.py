"""Plots of the decision log and of job results (matplotlib). Each function returns a new
:class:`matplotlib.figure.Figure`, made without pyplot: nothing global, no window, safe on a
server (Agg); in a notebook, end a cell with it (after ``%matplotlib inline``) or save it with
``figure.savefig(path)``.

What is drawn comes from the frames of :mod:`bandits.analysis.frames` and the results of
evaluation and tuning jobs (:func:`bandits.analysis.result_frame`); the intervals are the jobs'
own, except in :func:`reward_over_time`, whose band is the binned mean ± z·se of the logged
outcomes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from bandits.analysis.jobs import result_frame

PASSES, FAILS, CURRENT, RECOMMENDED = "tab:blue", "tab:red", "black", "tab:orange"


def _grid(panels: int, width: float = 6.0, height: float = 3.2, columns: int = 1) -> tuple[Figure, list]:
    rows = -(-panels // columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for extra in axes[panels:]:
        extra.remove()
    return figure, axes[:panels]


def _errors(value: pd.Series, lower: pd.Series, upper: pd.Series) -> np.ndarray:
    """Error bar lengths (2, n) of intervals around ``value`` (0 where unknown)."""
    lengths = np.vstack([value - lower, upper - value])
    return np.clip(np.nan_to_num(lengths), 0.0, None)


def binned(frame: pd.DataFrame, column: str, bins: int = 30, freq: str | None = None,
           confidence: float = 0.95) -> pd.DataFrame:
    """Per time bin of ``frame.ts`` (``bins`` equal spans, or pandas frequency ``freq`` such as
    ``"1h"``): ``ts`` (the bin's middle), ``n``, ``mean``, ``lower``, ``upper`` (mean ± z·se,
    se = the bin's standard deviation / √n). Empty bins are left out."""
    times = pd.to_datetime(frame["ts"], utc=True)
    if freq is not None:
        keys = times.dt.floor(freq)
        middle = keys + pd.Timedelta(freq) / 2
    else:
        start, span = times.min(), (times.max() - times.min()) or pd.Timedelta(seconds=1)
        index = np.minimum(((times - start) / (span / bins)).astype(int), bins - 1)
        keys = index
        middle = start + (index + 0.5) * (span / bins)
    grouped = frame[column].astype(float).groupby(keys)
    table = pd.DataFrame({"ts": middle.groupby(keys).first(), "n": grouped.count(),
                          "mean": grouped.mean(), "sd": grouped.std(ddof=1)})
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * table["sd"].fillna(0.0) / np.sqrt(table["n"])
    table["lower"], table["upper"] = table["mean"] - half, table["mean"] + half
    return table.drop(columns="sd").reset_index(drop=True)


def reward_over_time(frame: pd.DataFrame, objectives: Sequence[str] | None = None, bins: int = 30,
                     freq: str | None = None, confidence: float = 0.95) -> Figure:
    """What the logging policy earned over time: per objective (default: every numeric outcome
    column and ``reward``), the mean per time bin and its ``confidence`` band (see
    :func:`binned`), with the window's overall mean dashed. One panel per objective, time shared."""
    if objectives is None:
        skip = {"probability", "n_actions", "position"}
        objectives = [name for name in frame.columns[frame.columns.get_loc("pmf") + 1:]
                      if name not in skip and pd.api.types.is_numeric_dtype(frame[name])]
    figure, axes = _grid(len(objectives), height=2.4)
    for ax, objective in zip(axes, objectives):
        table = binned(frame, objective, bins, freq, confidence)
        ax.fill_between(table["ts"], table["lower"], table["upper"], alpha=0.25,
                        label=f"{confidence:.0%} interval")
        ax.plot(table["ts"], table["mean"], marker=".", label="mean per bin")
        ax.axhline(frame[objective].mean(), linestyle="--", color="grey", linewidth=1,
                   label="window mean")
        ax.set_ylabel(objective)
    if axes:
        axes[0].set_title(f"logging policy: {len(frame):,} decisions")
        axes[0].legend(loc="best", fontsize="small")
        axes[-1].set_xlabel("time (UTC)")
        for ax in axes[1:]:
            ax.sharex(axes[0])
    return figure


def estimates(result: Mapping[str, Any], objective: str = "reward",
              estimators: Sequence[str] | None = None) -> Figure:
    """An evaluation's estimates of ``objective`` with their intervals, one row per candidate
    and a marker per estimator, beside the logged mean (dashed). ``ccb``: the page total."""
    table = result_frame(result)
    table = table[(table["objective"] == objective) & table["slot"].isin([None, "total"])]
    if table.empty:
        raise ValueError(f"the result has no estimate of {objective!r}")
    names = list(dict.fromkeys(table["candidate"]))
    chosen = list(estimators or dict.fromkeys(table["estimator"]))
    figure, (ax,) = _grid(1, height=0.5 + 0.45 * len(names) * max(1, len(chosen)) ** 0.5)
    offsets = np.linspace(-0.25, 0.25, len(chosen)) if len(chosen) > 1 else [0.0]
    for offset, estimator in zip(offsets, chosen):
        rows = table[table["estimator"] == estimator].set_index("candidate").reindex(names)
        y = np.arange(len(names)) + offset
        error = _errors(rows["estimate"], rows["lower"], rows["upper"])
        ax.errorbar(rows["estimate"], y, xerr=error, fmt="o", capsize=3,
                    label=estimator)
    logged = result.get("logged_mean", {}).get(objective)
    if isinstance(logged, Mapping):  # ccb: per slot and total
        logged = logged.get("total")
    if logged is not None:
        ax.axvline(logged, linestyle="--", color="grey", label="logged mean")
    ax.set_yticks(np.arange(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"{objective} per decision ({result.get('confidence', 0.95):.0%} intervals)")
    ax.legend(loc="best", fontsize="small")
    return figure


def pareto_front(result: Mapping[str, Any], estimator: str = "dr",
                 against: Sequence[str] | None = None) -> Figure:
    """A tuning's candidates: the primary objective's estimate against each guardrail's (or,
    without guardrails, each other objective's, or ``against``), with both intervals. Blue: the
    candidate passes every guardrail with a reliable estimate; red: it does not. The Pareto
    front is joined by a line; the current weights are a black square, the recommendation an
    orange star; the dotted lines are the logged means on the tune split."""
    table = result_frame(result)
    table = table[table["estimator"] == estimator]
    primary = result["primary"]
    others = list(against or [g["objective"] for g in result.get("guardrails", [])]
                  or [name for name in result["objectives"] if name != primary])
    wide = table.pivot(index="candidate", columns="objective",
                       values=["estimate", "lower", "upper"])
    flags = table.drop_duplicates("candidate").set_index("candidate").reindex(wide.index)
    good = flags["passes"] & flags["reliable"]
    logged = result.get("logged_mean", {}).get("tune", {})
    figure, axes = _grid(len(others), width=5.0, height=4.0, columns=min(len(others), 2))
    for ax, other in zip(axes, others):
        x, y = wide["estimate"][other], wide["estimate"][primary]
        xerr = _errors(x, wide["lower"][other], wide["upper"][other])
        yerr = _errors(y, wide["lower"][primary], wide["upper"][primary])
        for mask, colour, label in ((good, PASSES, "passes"), (~good, FAILS, "fails a guardrail or unreliable")):
            if mask.any():
                ax.errorbar(x[mask], y[mask], xerr=xerr[:, mask.to_numpy()],
                            yerr=yerr[:, mask.to_numpy()], fmt="o", color=colour,
                            ecolor=to_rgba(colour, 0.25), markersize=4, elinewidth=0.8,
                            label=label)
        front = flags.index[flags["pareto"]]
        order = np.argsort(x[front].to_numpy())
        ax.plot(x[front].to_numpy()[order], y[front].to_numpy()[order], color="grey",
                linewidth=1, label="Pareto front")
        current = flags.index[flags["source"] == "current"]
        ax.scatter(x[current], y[current], marker="s", s=70, color=CURRENT, zorder=3,
                   label="current weights")
        recommended = flags.index[flags["recommended"]]
        if len(recommended):
            ax.scatter(x[recommended], y[recommended], marker="*", s=220, color=RECOMMENDED,
                       edgecolor="black", zorder=4, label="recommended")
        if other in logged:
            ax.axvline(logged[other], linestyle=":", color="grey")
        if primary in logged:
            ax.axhline(logged[primary], linestyle=":", color="grey")
        ax.set_xlabel(f"{other} ({estimator})")
        ax.set_ylabel(f"{primary} ({estimator})")
    action = result["recommendation"]["action"]
    axes[0].set_title(f"{len(flags)} weight candidates; recommendation: {action}")
    axes[0].legend(loc="best", fontsize="small")
    return figure


def weights(result: Mapping[str, Any], objective: str = "reward", estimator: str = "ips") -> Figure:
    """The importance weights each candidate of an evaluation puts on the logged events (from the
    job's diagnostics, by ``estimator``): the effective sample size against the number of events,
    and the weights' quantiles p50, p90, p99, p99.9 and maximum (log scale). A candidate whose
    effective sample size is a small share of the events is estimated from few of them."""
    table = result_frame(result)
    table = table[(table["objective"] == objective) & (table["estimator"] == estimator)
                  & table["slot"].isin([None, "total"])]
    if table.empty:
        raise ValueError(f"the result has no {estimator!r} estimate of {objective!r}")
    names = table["candidate"].tolist()
    figure, (left, right) = _grid(2, width=5.0, height=0.8 + 0.4 * len(names), columns=2)
    y = np.arange(len(names))
    left.barh(y, table["effective_sample_size"], label="effective sample size")
    left.barh(y, table["n"], fill=False, edgecolor="grey", label="events")
    left.set_yticks(y, names)
    left.invert_yaxis()
    left.set_xlabel("events")
    left.legend(loc="best", fontsize="small")
    for column, marker in (("weight_p50", "o"), ("weight_p90", "s"), ("weight_p99", "^"),
                           ("weight_p99.9", "v"), ("weight_max", "x")):
        if column in table:
            right.scatter(table[column].clip(lower=1e-3), y, marker=marker, label=column[7:])
    right.set_xscale("log")
    right.set_yticks(y, names)
    right.invert_yaxis()
    right.axvline(1.0, color="grey", linewidth=1, linestyle="--")
    right.set_xlabel(f"importance weight π/μ ({estimator}; below 0.001 shown at 0.001)")
    right.legend(loc="best", fontsize="small")
    return figure
