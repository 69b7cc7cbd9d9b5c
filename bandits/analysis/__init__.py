"""The decision log in pandas, evaluation and tuning jobs run in-process, and plots: for analysts
and the notebooks in ``notebooks/`` (docs/analysis.md). No HTTP.

* :mod:`~bandits.analysis.frames`: :func:`load_decisions` and :func:`iter_decisions` read a
  loop's log (any database URL) into DataFrames, one row per decision or per slot;
* :mod:`~bandits.analysis.jobs`: :func:`evaluate` and :func:`tune` record and run an evaluation
  or a tuning job in this process, as ``bandits evaluate`` does, and :func:`result_frame` makes
  their results tidy; :func:`estimate` is one ``bandits.ope`` estimate over a DataFrame;
* :mod:`~bandits.analysis.plots` (matplotlib, imported on its own): reward over time, estimates
  with intervals, the Pareto front of a tuning, importance weights;
* :mod:`~bandits.analysis.demo`: the notebooks' demo database, filled by ``bandits simulate
  --direct``, and a scratch service for the client notebook.

The estimators and the search live in :mod:`bandits.ope`, :mod:`bandits.jobs` and
:mod:`bandits.tuning`; nothing here computes an estimate of its own.
"""

from bandits.analysis.frames import iter_decisions, load_decisions, open_database
from bandits.analysis.jobs import estimate, evaluate, result_frame, tune

__all__ = ["estimate", "evaluate", "iter_decisions", "load_decisions", "open_database",
           "result_frame", "tune"]
