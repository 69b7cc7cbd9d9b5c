"""The choose body is checked by msgspec first and by pydantic when msgspec refuses it
(bandits.schemas.parse_choose). Whatever msgspec accepts, pydantic must accept with the same
values: otherwise a body the documented schema refuses would be served."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bandits.errors import ApiError
from bandits.schemas import (
    ActionIn, ChooseRequest, SlotIn, _ActionFast, _ChooseFast, _ChooseRaw, _ChooseRestFast,
    _SlotFast, _SlotRaw, choose_raw, choose_without_actions, parse, parse_choose,
)

PAIRS = [(ChooseRequest, _ChooseFast), (ActionIn, _ActionFast), (SlotIn, _SlotFast)]


def _plain(value: Any) -> Any:
    """A parsed request (either library's) as plain dicts and lists, to compare."""
    if isinstance(value, msgspec.Struct):
        return {name: _plain(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


# The least body of each: its required fields only.
LEAST = {ChooseRequest: {"actions": [{"id": "a"}]}, ActionIn: {"id": "a"},
         SlotIn: {"id": "s", "baseline": "a"}}


@pytest.mark.parametrize("model, fast", PAIRS, ids=lambda x: x.__name__)
def test_the_same_fields_with_the_same_defaults(model, fast):
    assert set(fast.__struct_fields__) == set(model.model_fields)
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    fields = fast.__struct_fields__
    assert set(fields[:len(fields) - len(fast.__struct_defaults__)]) == required
    assert set(LEAST[model]) == required
    assert _plain(msgspec.convert(LEAST[model], fast)) == _plain(model.model_validate(LEAST[model]))


_TEXTS = st.one_of(
    st.sampled_from(["", "a", "a" * 256, "a" * 257, "é" * 256, "é" * 257, "x\x00y", " "]),
    st.text(max_size=5),
)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False),
                     _TEXTS)
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                      st.dictionaries(_TEXTS, inner, max_size=3)),
    max_leaves=6,
)


_GOOD_TEXTS = st.one_of(st.sampled_from(["a", "a" * 256, "é" * 256, "x\x00y", " "]),
                        st.text(min_size=1, max_size=5))
_FEATURES = st.dictionaries(_TEXTS, _VALUES, max_size=3)
_GOOD_ACTION = st.fixed_dictionaries(
    {"id": _GOOD_TEXTS}, optional={"features": _FEATURES, "slot": _GOOD_TEXTS})
_GOOD_SLOT = st.fixed_dictionaries(
    {"id": _GOOD_TEXTS, "baseline": _GOOD_TEXTS},
    optional={"features": _FEATURES, "excluded": st.lists(_GOOD_TEXTS, max_size=3)})
_GOOD_BODY = st.fixed_dictionaries(
    {"actions": st.lists(_GOOD_ACTION, min_size=1, max_size=3)},
    optional={"event_id": _GOOD_TEXTS, "context": _FEATURES, "baseline": _GOOD_TEXTS,
              "excluded": st.lists(_GOOD_TEXTS, max_size=3), "defer": st.booleans(),
              "slots": st.lists(_GOOD_SLOT, min_size=1, max_size=3)})
_FIELDS = ["actions", "event_id", "context", "excluded", "baseline", "defer", "slots", "bogus",
           "id", "features", "slot"]


@st.composite
def _bodies(draw: st.DrawFn) -> dict:
    """A well-formed body, or one with a single field (top level, first action or first slot)
    set to any value: the boundary cases are one mistake away from an accepted body."""
    body = draw(_GOOD_BODY)
    where = draw(st.sampled_from(["none", "body", "action", "slot"]))
    if where == "none":
        return body
    target = body
    if where == "action":
        target = body["actions"][0]
    elif where == "slot":
        target = body.setdefault("slots", [draw(_GOOD_SLOT)])[0]
    target[draw(st.sampled_from(_FIELDS + ["baseline", "excluded"]))] = draw(
        st.one_of(_TEXTS, _VALUES, st.lists(_TEXTS, max_size=3)))
    return body


_BODIES = _bodies()


@settings(max_examples=3000, deadline=None)
@given(_BODIES)
def test_what_msgspec_accepts_pydantic_accepts_the_same(body):
    try:
        fast = msgspec.convert(body, _ChooseFast)
    except msgspec.ValidationError:
        return
    slow = parse(ChooseRequest, body, "InvalidChooseRequest", walk=False)  # raises if it refuses
    assert _plain(fast) == _plain(slow)


def test_a_refused_body_gets_pydantic_s_error():
    with pytest.raises(ApiError) as caught:
        parse_choose({"actions": [{"id": "a" * 257}]}, "InvalidChooseRequest")
    assert caught.value.status == 400
    assert caught.value.to_json()["error"] == {
        "code": "InvalidChooseRequest", "target": "actions[0].id",
        "message": "actions[0].id: String should have at most 256 characters",
    }


def test_a_well_formed_body_is_read_whole():
    body = {"event_id": "e1", "context": {"user": {"age": 3}}, "excluded": ["b"], "baseline": "a",
            "defer": True, "actions": [{"id": "a", "features": {"x": {"y": 1}}}, {"id": "b"}]}
    fast = parse_choose(body, "InvalidChooseRequest")
    assert isinstance(fast, _ChooseFast)  # msgspec took it, not the fallback
    assert _plain(fast) == _plain(ChooseRequest.model_validate(body))


# -- the choose body read from its bytes (bandits.schemas.choose_raw) -----------------------------


@pytest.mark.parametrize("raw, fast", [(_ChooseRaw, _ChooseRestFast), (_SlotRaw, _SlotFast)],
                         ids=lambda x: x.__name__)
def test_the_bytes_reader_has_the_same_fields_and_defaults(raw, fast):
    assert raw.__struct_fields__ == fast.__struct_fields__
    assert len(raw.__struct_defaults__) == len(fast.__struct_defaults__)


@settings(max_examples=2000, deadline=None)
@given(_BODIES)
def test_the_bytes_reader_takes_what_the_parsed_body_reader_takes(body):
    data = orjson.dumps(body)
    parsed = orjson.loads(data)  # what the full path reads
    expected = choose_without_actions(parsed) if isinstance(parsed, dict) else None
    got = choose_raw(data)
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert orjson.loads(got.actions) == expected.actions
    got.actions = expected.actions = None
    assert _plain(got) == _plain(expected)
