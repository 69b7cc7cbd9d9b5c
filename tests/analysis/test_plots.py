"""Each plot returns a Figure with what it promises to draw, from real frames and job results."""

from __future__ import annotations

import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from bandits.analysis import demo, evaluate, load_decisions, plots, result_frame, tune


@pytest.fixture(scope="module")
def evaluation(demo_url):
    return evaluate(demo_url, demo.LOOP, ["uniform", "constant:offer-03"], estimators=["ips", "snips"])


@pytest.fixture(scope="module")
def tuning(demo_url):
    return tune(demo_url, demo.LOOP, demo.TUNING["primary"], guardrails=demo.TUNING["guardrails"],
                budget=20)


def _labels(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_reward_over_time_draws_a_band_and_a_mean_per_objective(demo_url):
    frame = load_decisions(demo_url, demo.LOOP)

    figure = plots.reward_over_time(frame, bins=10)

    assert isinstance(figure, Figure)
    assert [ax.get_ylabel() for ax in figure.axes] == ["click", "conversion", "revenue", "reward"]
    for ax, objective in zip(figure.axes, ["click", "conversion", "revenue", "reward"]):
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 1
        mean, overall = ax.get_lines()
        assert len(mean.get_xdata()) == 10  # one point per bin (none empty here)
        assert overall.get_ydata()[0] == pytest.approx(frame[objective].mean())
    table = plots.binned(frame, "click", bins=10)
    assert table["n"].sum() == len(frame)
    assert ((table["lower"] <= table["mean"]) & (table["mean"] <= table["upper"])).all()


def test_estimates_draw_an_interval_per_candidate_and_estimator(evaluation):
    figure = plots.estimates(evaluation, "reward")

    (ax,) = figure.axes
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2  # ips, snips
    assert [t.get_text() for t in ax.get_yticklabels()] == ["logging", "uniform", "constant:offer-03"]
    assert "logged mean" in _labels(ax)
    logged = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert logged[0].get_xdata()[0] == pytest.approx(evaluation["logged_mean"]["reward"])


def test_weights_show_the_effective_sample_size_of_each_candidate(evaluation):
    figure = plots.weights(evaluation)

    left, right = figure.axes
    table = result_frame(evaluation)
    ips = table[(table["objective"] == "reward") & (table["estimator"] == "ips")]
    widths = [patch.get_width() for patch in left.patches][:3]
    assert widths == pytest.approx(ips["effective_sample_size"].tolist())
    assert widths[0] == pytest.approx(ips["n"].iloc[0])  # logging: every weight is 1
    assert right.get_xscale() == "log"
    assert len([c for c in right.collections if isinstance(c, PathCollection)]) == 5


def test_the_pareto_front_marks_passing_failing_current_and_recommended(tuning):
    figure = plots.pareto_front(tuning)

    (ax,) = figure.axes  # one guardrail: click
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("click (dr)", "revenue (dr)")
    labels = _labels(ax)
    assert "current weights" in labels and "Pareto front" in labels
    assert ("recommended" in labels) == (tuning["recommendation"]["action"] == "apply")
    table = result_frame(tuning)
    table = table[table["estimator"] == "dr"].drop_duplicates("candidate")
    drawn = sum(len(c[0].get_xdata()) for c in ax.containers if isinstance(c, ErrorbarContainer))
    assert drawn == len(table) == len(tuning["candidates"])
    front = [line for line in ax.get_lines() if line.get_label() == "Pareto front"][0]
    assert len(front.get_xdata()) == len(tuning["pareto_front"])


def test_result_frame_is_tidy_and_refuses_other_json(evaluation, tuning):
    table = result_frame(evaluation)
    assert len(table) == 3 * 4 * 2  # candidates (with logging) x objectives and reward x estimators
    logging = table[(table["candidate"] == "logging") & (table["estimator"] == "ips")]
    assert logging["estimate"].tolist() == pytest.approx(
        [evaluation["logged_mean"][o] for o in logging["objective"]])
    tuned = result_frame(tuning)
    assert set(tuned["estimator"]) == {"dr", "snips"}
    assert tuned["recommended"].sum() == (2 * 3 if tuning["recommendation"]["candidate"] is not None else 0)
    with pytest.raises(ValueError, match="not the result"):
        result_frame({"n": 3})
