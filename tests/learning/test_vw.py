"""The VW policy: a valid PMF from every exploration algorithm, VW's own errors, thread safety."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import vowpalwabbit

from bandits.learning.features import action_line, shared_line
from bandits.learning.vw import (
    Policy,
    Regressor,
    VwArgsError,
    _learn_adf,
    check_config,
    predict_each,
    vw_arguments,
    without_step_size,
)
from bandits.loop_config import LoopConfig

ALGORITHMS = ["squarecb", "epsilon", "softmax", "bag", "cover", "rnd"]
CONTEXT = {"user": {"country": "AR", "age": 31, "tags": ["new", "mobile"]}, "hour": 14}


def offers(count: int) -> list[str]:
    return [
        action_line(f"offer {i}", {"offer": {"vertical": f"v{i % 3}", "payout": i + 0.5}})
        for i in range(count)
    ]


def assert_pmf(pmf: list[float], length: int) -> None:
    assert len(pmf) == length
    assert all(math.isfinite(p) and p >= -1e-6 for p in pmf), pmf
    assert sum(pmf) == pytest.approx(1.0, abs=1e-5)


@pytest.fixture(params=ALGORITHMS)
def config(request) -> LoopConfig:
    return LoopConfig(exploration={"algorithm": request.param}, vw_args="-q uo")


@pytest.fixture
def policy(config):
    policy = Policy(config)
    yield policy
    policy.close()


@pytest.mark.parametrize("count", [1, 2, 7, 40])
def test_every_algorithm_predicts_a_pmf_over_the_actions(policy, count):
    assert_pmf(policy.predict(shared_line(CONTEXT), offers(count)), count)


def test_a_decision_without_context_gets_a_pmf(policy):
    assert shared_line({}) is None
    assert_pmf(policy.predict(None, offers(5)), 5)


def test_every_algorithm_is_named_on_the_command_line(config):
    arguments = vw_arguments(config).split()
    assert arguments[0] == "--cb_explore_adf"
    assert f"--{config.exploration.algorithm}" in arguments
    assert "--quiet" in arguments


def test_vw_arguments_include_the_users_vw_args():
    config = LoopConfig(vw_args="-q ua --l2 1e-6 -b 20")
    arguments = vw_arguments(config)
    assert arguments.endswith(" -q ua --l2 1e-6 -b 20")
    assert arguments.startswith("--cb_explore_adf --squarecb")
    assert Policy.arguments_for(config) == arguments
    assert vw_arguments(LoopConfig()) == (
        "--cb_explore_adf --squarecb --gamma_scale 10 --gamma_exponent 0.5 --quiet"
    )


@pytest.mark.parametrize(
    "vw_args, complaint",
    [
        ("--no_such_flag", "unrecognised option '--no_such_flag'"),
        ("-b 99", "bits"),
        ("--l2 abc", "abc"),
    ],
)
def test_check_config_quotes_vws_refusal(vw_args, complaint):
    config = LoopConfig(vw_args=vw_args)
    with pytest.raises(RuntimeError) as refused_by_vw:
        vowpalwabbit.Workspace(vw_arguments(config))
    with pytest.raises(VwArgsError) as refused:
        check_config(config)
    assert complaint in str(refused.value)
    assert str(refused.value) == str(refused_by_vw.value).strip()
    with pytest.raises(VwArgsError):
        Policy(config)


def test_check_config_accepts_good_vw_args(config):
    check_config(config)
    check_config(config.model_copy(update={"vw_args": "-q ua --l2 1e-6 -b 20"}))


def test_predictions_are_thread_safe(policy):
    threads, predictions = 16, 200
    start = threading.Barrier(threads)
    shared = shared_line(CONTEXT)

    def predict_many(worker: int) -> list[list[float]]:
        start.wait()
        pmfs = []
        for number in range(predictions):
            count = 1 + (worker + number) % 6
            pmfs.append((count, policy.predict(shared, offers(count))))
        return pmfs

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(predict_many, worker) for worker in range(threads)]
        results = [future.result() for future in futures]

    assert sum(len(pmfs) for pmfs in results) == threads * predictions
    for pmfs in results:
        for count, pmf in pmfs:
            assert_pmf(pmf, count)


@pytest.mark.parametrize("given, kept", [
    ("-q u_ -l 0.05", "-q u_"),
    ("-q u_ --learning_rate=0.1 --power_t 0 -b 20", "-q u_ -b 20"),
    ("-l0.3 -q :: --initial_t 1 --decay_learning_rate 0.9", "-q ::"),
    ("--lrq ab2 -q u_ --l2 1e-6", "--lrq ab2 -q u_ --l2 1e-6"),
])
def test_reward_models_take_the_loops_features_but_not_its_step_size(given, kept):
    """A loop may learn slowly on purpose (-l 0.05 for revenue); a reward model fitted in one
    pass must not, or it under-learns the rarely shown actions (docs/tuning.md)."""
    assert without_step_size(given) == kept
    regressor = Regressor(given)
    try:
        assert regressor.arguments == f"--cb_adf --cb_type mtr --quiet {kept}"
    finally:
        regressor.close()


def _regression_log(seed: int, events: int, actions: int):
    """Contexts, logged actions and outcomes whose mean depends on (segment, action)."""
    rng = np.random.default_rng(seed)
    lines = offers(actions)
    means = rng.random((4, actions))
    log = []
    for _ in range(events):
        segment = int(rng.integers(4))
        shared = shared_line({"user": {"segment": f"s{segment}", "score": float(rng.random())}})
        logged = int(rng.integers(actions))
        log.append((shared, logged, float(rng.random() < means[segment, logged])))
    return lines, log


@pytest.mark.parametrize("actions", [3, 12])
def test_learning_only_the_logged_line_reproduces_the_full_adf_fit(actions):
    """MTR learns only the logged action's example, weighted by events / actions seen; the
    regressor learns that line alone with the step size that weight amounts to. Its predictions
    agree with a workspace that learns every event's full ADF example (the reward models' fit
    before) to float precision; with VW's default step size they differ by 0.05."""
    lines, log = _regression_log(1, 3000, actions)
    full = vowpalwabbit.Workspace("--cb_adf --cb_type mtr --quiet -q u_")
    short = Regressor("-q u_ -l 0.05", actions=actions)
    try:
        assert "-l 0.05" not in short.arguments
        for shared, logged, value in log:
            _learn_adf(full, shared, lines, logged, -value, 1.0)
            short.learn(shared, lines[logged], value)
        for shared, _, _ in log[:50]:
            theirs = -np.array(full.predict("\n".join([shared, *lines])))
            ours = np.array(short.predict(shared, lines))
            assert np.abs(ours - theirs).max() < 1e-4, (ours, theirs)  # 1e-7 seen
            assert np.ptp(ours) > 0.1  # they learned something
    finally:
        full.finish()
        short.close()


def test_predict_each_parses_once_and_predicts_as_each_model_alone():
    lines, log = _regression_log(2, 500, 5)
    models = [Regressor("-q u_", actions=5) for _ in range(3)]
    try:
        for index, model in enumerate(models):  # three different models
            for shared, logged, value in log[index::3]:
                model.learn(shared, lines[logged], value * (index + 1))
        for shared, _, _ in log[:20]:
            assert predict_each(models, shared, lines) == [m.predict(shared, lines) for m in models]
        assert predict_each(models, None, lines) == [m.predict(None, lines) for m in models]
    finally:
        for model in models:
            model.close()
    other = Regressor("-q u_ -b 20")
    try:
        with pytest.raises(ValueError, match="same VW arguments"):
            predict_each([models[0], other], None, lines)
    finally:
        other.close()
