"""JSON → VW text featurisation: the one featuriser of the project.

A top-level key of ``context`` (or of an action's ``features``) is a VW namespace. Inside it:

* strings and booleans become categorical features ``key=value`` (``true``/``false``);
* numbers become numeric features ``key:value``;
* lists of strings (or booleans) become several categorical features with the same key; numbers in
  a list become ``key[i]:value``;
* nested objects flatten with dots (``device.os=ios``);
* ``null`` is skipped (the logged JSON keeps it).

A scalar at the top level is a namespace holding one feature named like the namespace.

Every name and value is escaped so that any Unicode string survives: ``%``, whitespace, ``|`` and
``:`` are percent-encoded, which keeps distinct values distinct (``"a b"`` and ``"a_b"`` differ).

The same walk validates: a value VW cannot take (NaN, infinities, magnitudes beyond float32, NUL
characters, lists of objects or lists, nesting deeper than :data:`MAX_DEPTH`) raises
:class:`FeatureError` naming where it is, so a request is checked and featurised in one pass.

>>> shared_line({"user": {"country": "AR", "age": 31, "tags": ["new", "mobile"]}})
'shared |user country=AR age:31 tags=new tags=mobile'
>>> action_line("offer 17", {"offer": {"vertical": "loans|cards"}})
'|_action id=offer%2017 |offer vertical=loans%7Ccards'
"""

from __future__ import annotations

import re
from typing import Any

import orjson

# The service adds each action's id as a feature in this namespace, so that actions without
# features of their own are still told apart by the model.
ACTION_NAMESPACE = "_action"

# A little below float32's largest (3.4028235e38), so that the nine-digit spelling stays finite in VW.
FLOAT32_MAX = 3.4e38
# Numbers smaller than this in magnitude are features of value zero, which VW leaves out: its
# parser reads nine significant digits down to about 1e-29 and drops anything smaller.
TINY = 1e-28

# Objects nested deeper than this inside a namespace are refused (and recursion stays bounded).
MAX_DEPTH = 32


class FeatureError(ValueError):
    """A feature value the service cannot take; ``path`` is where, below the root given."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self._parts: list[str] = []  # innermost first, added while the walk unwinds

    def inside(self, part: str) -> "FeatureError":
        self._parts.append(part)
        return self

    def path(self, root: str) -> str:
        return root + "".join(reversed(self._parts))

    def message(self, root: str) -> str:
        return f"{self.path(root)} {self.problem}"


# `\s` in a str pattern matches exactly the characters for which str.isspace() is true.
_SPECIAL = re.compile(r"[%|:\s\x00]")


def _percent(match: re.Match[str]) -> str:
    if match.group() == "\x00":
        raise FeatureError("contains a NUL character")
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8"))


def escape(token: str) -> str:
    """Percent-encode the characters VW's text format treats as syntax (``%``, ``|``, ``:``) and
    all whitespace; everything else, Unicode included, is left as it is. NUL is refused."""
    escaped = _escaped.get(token)
    if escaped is None:
        escaped = token if _SPECIAL.search(token) is None else _SPECIAL.sub(_percent, token)
        if len(token) <= ESCAPE_CACHE_TOKEN:
            if len(_escaped) >= ESCAPE_CACHE_SIZE:
                _escaped.clear()
            _escaped[token] = escaped
    return escaped


# Names and categorical values repeat from one request to the next: their escaped spellings are
# remembered (a dictionary lookup costs a fifth of the pattern search), the short ones only, so
# the cache stays under a few megabytes.
ESCAPE_CACHE_SIZE = 50_000
ESCAPE_CACHE_TOKEN = 64
_escaped: dict[str, str] = {}


def _number(value: float | int) -> str:
    # VW keeps 32-bit floats: nine significant digits say all it can hold. Longer spellings
    # (repr gives up to 17) underflow VW's digit-by-digit parser for small exponents.
    if type(value) is int:
        return str(value)
    return f"{value:.9g}"


def _numeric(prefix: str, value: float | int, out: list[str]) -> None:
    if not -FLOAT32_MAX <= value <= FLOAT32_MAX:  # false for NaN too
        if value != value or value in (float("inf"), float("-inf")):
            raise FeatureError("is not a finite number")
        raise FeatureError(f"is out of range (|x| must be at most {FLOAT32_MAX:.4g})")
    if value >= TINY or value <= -TINY:  # VW drops zeros, and cannot read magnitudes below ~1e-29
        out.append(f"{prefix}:{_number(value)}")


def _flatten(prefix: str, value: Any, out: list[str], depth: int) -> None:
    kind = type(value)
    if kind is str:
        out.append(f"{prefix}={escape(value)}")
    elif kind is float or kind is int:
        _numeric(prefix, value, out)
    elif kind is bool:
        out.append(f"{prefix}={'true' if value else 'false'}")
    elif kind is dict:
        if depth >= MAX_DEPTH:
            raise FeatureError(f"is nested deeper than {MAX_DEPTH} levels")
        for key, item in value.items():
            try:
                name = escape(key)
                if prefix:
                    name = f"{prefix}.{name}"
                item_kind = type(item)  # the common scalars here, to save a call per feature
                if item_kind is str:
                    out.append(f"{name}={escape(item)}")
                elif item_kind is int or item_kind is float:
                    _numeric(name, item, out)
                else:
                    _flatten(name, item, out, depth + 1)
            except FeatureError as error:
                raise error.inside(f".{key}" if "\x00" not in key else "") from None
    elif kind is list:
        for index, item in enumerate(value):
            try:
                item_kind = type(item)
                if item_kind is str:
                    out.append(f"{prefix}={escape(item)}")
                elif item_kind is bool:
                    out.append(f"{prefix}={'true' if item else 'false'}")
                elif item_kind is float or item_kind is int:
                    _numeric(f"{prefix}[{index}]", item, out)
                elif item is not None:
                    raise FeatureError(f"must be a string, number, boolean or null, not {_json_type(item)}")
            except FeatureError as error:
                raise error.inside(f"[{index}]") from None
    elif value is not None:
        raise FeatureError(f"has an unsupported type {_json_type(value)}")


def namespaces_text(namespaces: dict[str, Any]) -> str:
    """``|ns f1 f2 |ns2 ...`` for a dict of namespaces (empty namespaces are left out).

    Raises :class:`FeatureError` (path relative to the dict) for a value VW cannot take.
    """
    parts = []
    for name, value in namespaces.items():
        features: list[str] = []
        try:
            namespace = escape(name)
            if type(value) is dict:
                _flatten("", value, features, 0)
            else:
                _flatten(namespace, value, features, 0)
        except FeatureError as error:
            raise error.inside(f".{name}" if "\x00" not in name else "") from None
        if features:
            parts.append(f"|{namespace} {' '.join(features)}")
    return " ".join(parts)


def shared_line(context: dict[str, Any]) -> str | None:
    """The ADF shared example for a context, or ``None`` when it has no features."""
    return shared_example(namespaces_text(context))


def shared_example(body: str) -> str | None:
    """The ADF shared example holding already featurised namespaces (``None`` when empty)."""
    return f"shared {body}" if body else None


def action_line(action_id: str, features: dict[str, Any] | None) -> str:
    """The ADF example of one action: its id feature plus its own namespaces.

    A :class:`FeatureError` about the id has the path ``.id``; about a feature, ``.features...``.
    """
    return identified_line(ACTION_NAMESPACE, action_id, features)


def identified_line(namespace: str, item_id: str, features: dict[str, Any] | None) -> str:
    """``|namespace id=<item_id>`` followed by the item's own namespaces (an action's, a slot's).

    A :class:`FeatureError` about the id has the path ``.id``; about a feature, ``.features...``.
    """
    key = _line_key(namespace, item_id, features)
    line = _lines.get(key) if key is not None else None
    if line is not None:
        return line
    try:
        head = f"|{namespace} id={escape(item_id)}"
    except FeatureError as error:
        raise error.inside(".id") from None
    try:
        body = namespaces_text(features or {})
    except FeatureError as error:
        raise error.inside(".features") from None
    line = f"{head} {body}" if body else head
    if key is not None:
        if len(_lines) >= LINE_CACHE_SIZE:
            _lines.clear()
        _lines[key] = line
    return line


# Actions (and slots) repeat from one request to the next, as a catalogue does: the line of each
# is remembered under its namespace, id and the JSON of its features, which spells the features'
# order and types exactly. Features whose JSON is long, or holds a null, are featurised each time:
# orjson writes NaN and infinities as null, so a key with a null could stand for a value that
# must be refused. Only lines that passed validation are remembered.
LINE_CACHE_SIZE = 20_000
LINE_CACHE_KEY = 1024  # bytes of features JSON
_lines: dict[tuple[str, str, bytes], str] = {}


def _line_key(namespace: str, item_id: str, features: Any) -> tuple[str, str, bytes] | None:
    if type(item_id) is not str or len(item_id) > LINE_CACHE_KEY:
        return None
    try:
        document = orjson.dumps(features)
    except TypeError:  # orjson.JSONEncodeError: not JSON (a caller's own objects, huge integers)
        return None
    if len(document) > LINE_CACHE_KEY or b"null" in document:
        return None
    return namespace, item_id, document


def check_value(value: Any, path: str) -> str | None:
    """The message naming what is wrong with a feature value at ``path``, or ``None``."""
    try:
        _flatten("x", value, [], 0)
    except FeatureError as error:
        return error.message(path)
    return None


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array"}.get(type(value), type(value).__name__)
