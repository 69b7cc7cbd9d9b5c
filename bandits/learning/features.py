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

>>> shared_line({"user": {"country": "AR", "age": 31, "tags": ["new", "mobile"]}})
'shared |user country=AR age:31 tags=new tags=mobile'
>>> action_line("offer 17", {"offer": {"vertical": "loans|cards"}})
'|_action id=offer%2017 |offer vertical=loans%7Ccards'
"""

from __future__ import annotations

import math
import re
from typing import Any

# The service adds each action's id as a feature in this namespace, so that actions without
# features of their own are still told apart by the model.
ACTION_NAMESPACE = "_action"

# A little below float32's largest (3.4028235e38), so that the nine-digit spelling stays finite in VW.
FLOAT32_MAX = 3.4e38
# Numbers smaller than this in magnitude are features of value zero, which VW leaves out: its
# parser reads nine significant digits down to about 1e-29 and drops anything smaller.
TINY = 1e-28

# `\s` in a str pattern matches exactly the characters for which str.isspace() is true.
_SPECIAL = re.compile(r"[%|:\s]")


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8"))


def escape(token: str) -> str:
    """Percent-encode the characters VW's text format treats as syntax (``%``, ``|``, ``:``) and
    all whitespace; everything else, Unicode included, is left as it is."""
    if _SPECIAL.search(token) is None:
        return token
    return _SPECIAL.sub(_percent, token)


def _number(value: float | int) -> str:
    # VW keeps 32-bit floats: nine significant digits say all it can hold. Longer spellings
    # (repr gives up to 17) underflow VW's digit-by-digit parser for small exponents.
    if isinstance(value, int):
        return str(value)
    return f"{value:.9g}"


def _flatten(prefix: str, value: Any, out: list[str]) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        out.append(f"{prefix}={'true' if value else 'false'}")
    elif isinstance(value, str):
        out.append(f"{prefix}={escape(value)}")
    elif isinstance(value, (int, float)):
        if abs(value) >= TINY:  # VW drops zeros, and cannot read magnitudes below ~1e-37
            out.append(f"{prefix}:{_number(value)}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{escape(key)}" if prefix else escape(key), item, out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, (str, bool)):
                _flatten(prefix, item, out)
            elif item is not None:
                _flatten(f"{prefix}[{index}]", item, out)
    else:  # validation rejects everything else before we get here
        raise TypeError(f"cannot featurise {type(value).__name__}")


def namespaces_text(namespaces: dict[str, Any]) -> str:
    """``|ns f1 f2 |ns2 ...`` for a dict of namespaces (empty namespaces are left out)."""
    parts = []
    for name, value in namespaces.items():
        features: list[str] = []
        if isinstance(value, dict):
            _flatten("", value, features)
        else:
            _flatten(escape(name), value, features)
        if features:
            parts.append(f"|{escape(name)} {' '.join(features)}")
    return " ".join(parts)


def shared_line(context: dict[str, Any]) -> str | None:
    """The ADF shared example for a context, or ``None`` when it has no features."""
    body = namespaces_text(context)
    return f"shared {body}" if body else None


def action_line(action_id: str, features: dict[str, Any] | None) -> str:
    """The ADF example of one action: its id feature plus its own namespaces."""
    body = namespaces_text(features or {})
    head = f"|{ACTION_NAMESPACE} id={escape(action_id)}"
    return f"{head} {body}" if body else head


def check_value(value: Any, path: str) -> str | None:
    """Return a message naming what is wrong with a feature value at ``path``, or ``None``.

    Allowed: strings, booleans, finite numbers within float32 range, ``null``, objects of those,
    and lists of strings, booleans, numbers or ``null``.
    """
    if value is None or isinstance(value, (bool, str)):
        return None
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{path} is not a finite number"
        if abs(value) > FLOAT32_MAX:
            return f"{path} is out of range (|x| must be at most {FLOAT32_MAX:.4g})"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = check_value(item, f"{path}.{key}")
            if problem:
                return problem
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, (dict, list)):
                return f"{path}[{index}] must be a string, number, boolean or null, not {_json_type(item)}"
            problem = check_value(item, f"{path}[{index}]")
            if problem:
                return problem
        return None
    return f"{path} has an unsupported type {_json_type(value)}"


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array"}.get(type(value), type(value).__name__)
