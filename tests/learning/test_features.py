"""Featurisation: escaping keeps every string distinct, and VW reads the text as we mean it."""

from __future__ import annotations

import doctest
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bandits.learning import features, sampling
from bandits.learning.features import (
    ACTION_NAMESPACE,
    FLOAT32_MAX,
    MAX_DEPTH,
    TINY,
    FeatureError,
    action_line,
    check_value,
    escape,
    shared_line,
)
from bandits.learning.vw import namespace_feature_counts

# VW adds its constant feature to every example in this namespace; no UTF-8 text starts with 0x80.
CONSTANT_NAMESPACE = "\x80"
SYNTAX = " \t\n\r\x0b\x0c\x85\u00a0\u2028\u3000|:%=.[]"

# Arbitrary Unicode (without lone surrogates, which the API's JSON parser refuses), with VW's
# syntax characters and our escape character made frequent.
# NUL is refused (test_nul_is_refused_where_it_stands).
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00") | st.sampled_from(SYNTAX),
                max_size=12)
# Strings that VW's text format could not carry unescaped.
awkward_texts = st.builds(
    lambda head, special, tail: head + special + tail,
    texts,
    st.sampled_from([" ", "\t", "\n", "|", ":", "%", "é", "日本", "🎲", "\u2028", "a b|c:d"]),
    texts,
)


def _magnitudes(low: float) -> st.SearchStrategy[float]:
    positive = st.floats(min_value=low, max_value=FLOAT32_MAX)
    return positive | positive.map(lambda x: -x)


# Every magnitude down to the smallest float: below TINY they count as zero (leaf_count).
numbers = (
    st.sampled_from([0, 0.0, -0.0, 1, -1, 0.5, TINY, -TINY, FLOAT32_MAX, -FLOAT32_MAX])
    | _magnitudes(5e-324)
    | st.integers(min_value=-int(FLOAT32_MAX), max_value=int(FLOAT32_MAX))
)
scalars = st.none() | st.booleans() | texts | numbers
feature_values = st.recursive(
    scalars | st.lists(scalars, max_size=4),
    lambda children: st.dictionaries(texts, children, max_size=4),
    max_leaves=16,
)
namespaces = st.dictionaries(texts, feature_values, max_size=4)


def unescape(escaped: str) -> str:
    """The inverse of :func:`escape` (test-side): percent sequences are UTF-8 bytes."""
    raw = bytearray()
    index = 0
    while index < len(escaped):
        if escaped[index] == "%":
            raw.append(int(escaped[index + 1 : index + 3], 16))
            index += 3
        else:
            raw.extend(escaped[index].encode("utf-8"))
            index += 1
    return raw.decode("utf-8")


def leaf_count(value: Any) -> int:
    """Features VW should see for a value: null skipped, each list item one feature.

    A numeric feature equal to zero is left out by VW (it contributes nothing to a linear model,
    nor to any interaction), so it does not count.
    """
    if value is None:
        return 0
    if isinstance(value, (bool, str)):
        return 1
    if isinstance(value, (int, float)):
        return 0 if abs(value) < TINY else 1
    if isinstance(value, dict):
        return sum(leaf_count(item) for item in value.values())
    return sum(leaf_count(item) for item in value)


def namespace_key(name: str) -> str:
    """VW's namespace index: the first byte of the escaped name, or the default namespace ' '."""
    escaped = escape(name)
    return chr(escaped.encode("utf-8")[0]) if escaped else " "


def expected_counts(
    namespace_values: dict[str, Any], extra: Counter | None = None
) -> dict[str, int]:
    counts = Counter(extra or {})
    for name, value in namespace_values.items():
        counts[namespace_key(name)] += leaf_count(value)
    return {key: count for key, count in counts.items() if count}


def vw_counts(lines: list[str]) -> list[dict[str, int]]:
    parsed = namespace_feature_counts(lines)
    for counts in parsed:
        assert counts.pop(CONSTANT_NAMESPACE) == 1
    return [{key: count for key, count in counts.items() if count} for counts in parsed]


# -- escape ------------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(texts | st.text(st.characters(codec="utf-8", exclude_characters="\x00")))
@example("a b")
@example("%20")
@example("a\u2028b")
def test_escape_is_invertible_and_leaves_no_syntax(token):
    escaped = escape(token)
    assert unescape(escaped) == token
    assert not any(char.isspace() for char in escaped)
    assert "|" not in escaped
    assert ":" not in escaped


@settings(max_examples=500, deadline=None)
@given(st.text(st.sampled_from("%|: \t\n_2570ACa\u00e9"), max_size=6),
       st.text(st.sampled_from("%|: \t\n_2570ACa\u00e9"), max_size=6))
@example("a b", "a_b")
@example("a b", "a%20b")
@example("%", "%25")
@example("\u00a0", "%C2%A0")
def test_escape_keeps_distinct_strings_distinct(first, second):
    # A small alphabet rich in escape material, so near-collisions are actually tried.
    if first != second:
        assert escape(first) != escape(second)


# -- what VW reads -------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(context=namespaces, action_id=texts, action_features=namespaces | st.none())
@example(context={"user": {"country": "AR", "age": 31, "tags": ["new", "mobile"]}},
         action_id="offer 17", action_features={"offer": {"vertical": "loans|cards"}})
@example(context={"": "x", "u": {"": 1.5, "a": None, "b": []}}, action_id="",
         action_features={"": {}})
@example(context={"n": [1, 0, 2.5, None, "x", True]}, action_id=":", action_features=None)
def test_vw_parses_exactly_the_features_we_mean(context, action_id, action_features):
    shared = shared_line(context)
    action = action_line(action_id, action_features)
    lines = [shared, action] if shared is not None else [action]
    parsed = vw_counts(lines)

    expected_action = expected_counts(action_features or {}, Counter({ACTION_NAMESPACE[0]: 1}))
    if shared is not None:
        assert shared.startswith("shared |")
        assert parsed == [expected_counts(context), expected_action]
    else:
        assert expected_counts(context) == {}
        assert parsed == [expected_action]


@settings(max_examples=150, deadline=None)
@given(st.data(), awkward_texts, awkward_texts)
def test_awkward_values_survive_as_one_distinct_feature(data, first, second):
    where = data.draw(st.sampled_from(["nested", "scalar", "list", "action id"]))

    def line(value: str) -> str:
        if where == "nested":
            return shared_line({"user": {"note": value}})
        if where == "scalar":
            return shared_line({"user": value})
        if where == "list":
            return shared_line({"user": [value]})
        return action_line(value, None)

    first_line = line(first)
    token = first_line.split()[-1]
    assert unescape(token.split("=", 1)[1]) == first
    assert vw_counts([first_line])[0] == ({"u": 1} if where != "action id" else {"_": 1})
    if first != second:
        assert line(first) != line(second)


@pytest.mark.parametrize("value", [1.2345678901234567e-23, 3.0000000000000003e-27, -2.5e-28])
def test_small_numbers_reach_vw(value):
    assert check_value(value, "context.m.x") is None
    assert vw_counts([shared_line({"m": {"x": value}})]) == [{"m": 1}]


@pytest.mark.parametrize("value", [1.1754943508222875e-38, 9.9e-29, -5e-35])
def test_numbers_below_tiny_count_as_zero(value):
    # VW leaves zero-valued features out and cannot read magnitudes below ~1e-37 at all, so the
    # featuriser treats every magnitude below TINY (1e-28) as zero, consistently.
    assert check_value(value, "context.m.x") is None
    assert shared_line({"m": {"x": value}}) is None
    assert vw_counts([shared_line({"m": {"x": value, "y": 1}})]) == [{"m": 1}]


# -- docstring examples ----------------------------------------------------------------------------


@pytest.mark.parametrize("module", [features, sampling], ids=lambda module: module.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, verbose=False, report=True)
    assert result.attempted > 0
    assert result.failed == 0


# -- validation --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(feature_values)
def test_check_value_accepts_the_allowed_kinds(value):
    assert check_value(value, "context.user") is None


non_finite = st.sampled_from([math.nan, -math.nan, math.inf, -math.inf])
_too_large = st.floats(min_value=math.nextafter(FLOAT32_MAX, math.inf), allow_infinity=False)
beyond_float32 = (
    _too_large
    | _too_large.map(lambda x: -x)
    | st.integers(min_value=int(FLOAT32_MAX) + 1).flatmap(lambda n: st.sampled_from([n, -n]))
)
containers = st.dictionaries(texts, scalars, max_size=2) | st.lists(scalars, max_size=2)


def _bury(bad: Any, depth: int, where: str) -> Any:
    """Put a bad value at the bottom of ``depth`` objects, in a list or not."""
    value = [1, bad] if where == "list" else bad
    for level in range(depth):
        value = {f"k{level}": value}
    return value


@settings(max_examples=200, deadline=None)
@given(non_finite | beyond_float32, st.integers(0, 3), st.sampled_from(["value", "list"]))
def test_check_value_rejects_numbers_vw_cannot_hold(bad, depth, where):
    problem = check_value(_bury(bad, depth, where), "context.user")
    assert problem is not None
    assert problem.startswith("context.user")
    assert "finite" in problem or "out of range" in problem


@settings(max_examples=200, deadline=None)
@given(containers, st.integers(0, 3))
def test_check_value_rejects_lists_of_objects_or_lists(inner, depth):
    problem = check_value(_bury(inner, depth, "list"), "context.user")
    assert problem is not None
    assert "[1] must be a string, number, boolean or null" in problem


def test_check_value_names_the_path_and_rejects_other_types():
    assert check_value({"a": {"b": [1, math.nan]}}, "context.user") == (
        "context.user.a.b[1] is not a finite number"
    )
    assert check_value({"a": [{"b": 1}]}, "context.user") == (
        "context.user.a[0] must be a string, number, boolean or null, not an object"
    )
    assert check_value({"a": [[1]]}, "context.user") == (
        "context.user.a[0] must be a string, number, boolean or null, not an array"
    )
    assert check_value((1, 2), "context.user") is not None
    assert check_value(FLOAT32_MAX, "x") is None
    assert check_value(-FLOAT32_MAX, "x") is None
    assert check_value(int(FLOAT32_MAX), "x") is None


@pytest.mark.parametrize("context, path", [
    ({"user": {"name": "a\x00b"}}, "context.user.name"),
    ({"user": {"tags": ["ok", "\x00"]}}, "context.user.tags[1]"),
    ({"user": {"a\x00": 1}}, "context.user"),
    ({"us\x00er": {"a": 1}}, "context"),
    ({"page": "\x00"}, "context.page"),
])
def test_nul_is_refused_where_it_stands(context, path):
    with pytest.raises(FeatureError) as raised:
        shared_line(context)
    assert raised.value.path("context") == path
    assert "NUL" in raised.value.problem


def test_action_errors_name_the_id_or_the_feature():
    with pytest.raises(FeatureError) as raised:
        action_line("a\x00", None)
    assert raised.value.path("actions[2]") == "actions[2].id"
    with pytest.raises(FeatureError) as raised:
        action_line("a", {"offer": {"price": float("nan")}})
    assert raised.value.message("actions[2]") == "actions[2].features.offer.price is not a finite number"


def test_nesting_is_bounded():
    value: Any = 1
    for _ in range(MAX_DEPTH + 1):
        value = {"a": value}
    with pytest.raises(FeatureError, match="nested deeper than 32"):
        shared_line({"user": value})
    value = 1
    for _ in range(MAX_DEPTH - 1):
        value = {"a": value}
    assert shared_line({"user": value}) is not None


# -- the line cache ----------------------------------------------------------------------------


def _uncached_line(action_id: str, action_features: Any) -> str:
    features._lines.clear()
    return action_line(action_id, action_features)


@settings(max_examples=300, deadline=None)
@given(texts, namespaces, namespaces)
def test_a_remembered_line_is_the_line_of_those_very_features(action_id, first, second):
    """Lines come back from the cache only for features with the same JSON: same order, same
    types. Whatever was featurised before, each line is what a fresh featurisation gives."""
    expected = [_uncached_line(action_id, first), _uncached_line(action_id, second)]
    action_line(action_id, first)
    assert action_line(action_id, second) == expected[1]
    assert action_line(action_id, first) == expected[0]


def test_a_value_that_must_be_refused_is_not_taken_for_a_remembered_one():
    # orjson writes NaN and the infinities as null: their JSON matches a null's.
    assert action_line("a", {"x": {"v": None}}) == f"|{ACTION_NAMESPACE} id=a"
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(FeatureError, match="finite"):
            action_line("a", {"x": {"v": bad}})
    # A refused line is not remembered: it is refused again.
    for _ in range(2):
        with pytest.raises(FeatureError, match="NUL"):
            action_line("a", {"x": {"v": "b\x00"}})


def test_numbers_keep_their_type_in_the_cache():
    assert action_line("a", {"x": {"flag": True}}) == f"|{ACTION_NAMESPACE} id=a |x flag=true"
    assert action_line("a", {"x": {"flag": 1}}) == f"|{ACTION_NAMESPACE} id=a |x flag:1"


def test_the_line_cache_stays_bounded(monkeypatch):
    monkeypatch.setattr(features, "LINE_CACHE_SIZE", 10)
    features._lines.clear()
    for index in range(25):
        action_line(f"a{index}", {"x": {"v": index}})
    assert 0 < len(features._lines) <= 10
    long_text = "y" * features.LINE_CACHE_KEY
    features._lines.clear()
    assert action_line("a", {"x": {"v": long_text}}).endswith(long_text)
    assert not features._lines  # long features are featurised each time
