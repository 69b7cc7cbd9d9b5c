"""Refused exports: plain JSON errors before any byte of the log (tests/api/test_bad_input.py's
assert helper), on SQLite and Postgres."""

from __future__ import annotations

import pytest

from tests.api.test_bad_input import Case, assert_refused
from tests.conftest import ADMIN

EXPORT = "/v1/loops/shop/export"


@pytest.mark.parametrize("case", [
    pytest.param(Case(422, "UnknownExportFormat", ("'csv'", "dsjson, parquet"), "format",
                      path=f"{EXPORT}?format=csv", method="get"), id="unknown-format"),
    pytest.param(Case(422, "InvalidWindow", ("since",), "since", path=f"{EXPORT}?since=yesterday",
                      method="get"), id="since-not-a-date"),
    pytest.param(Case(422, "InvalidWindow", ("until must be after since",), "until",
                      path=f"{EXPORT}?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
                      method="get"), id="inverted-window"),
    pytest.param(Case(422, "InvalidWindow", ("until must be after since",), "until",
                      path=f"{EXPORT}?since=2026-01-01&until=2026-01-01", method="get"), id="empty-window"),
    pytest.param(Case(422, "InvalidExportRequest", ("unknown parameter",), "from",
                      path=f"{EXPORT}?from=2026-01-01", method="get"), id="unknown-parameter"),
    pytest.param(Case(404, "LoopNotFound", ("'nowhere'",), "loop", path="/v1/loops/nowhere/export",
                      method="get"), id="unknown-loop"),
])
def test_a_bad_export_request_is_refused_plainly(client, loop_key, case: Case):
    assert_refused(client.get(case.path, headers=ADMIN), case)


@pytest.mark.parametrize("headers, status, code", [
    ({}, 401, "Unauthorized"),
    ({"Authorization": "Bearer not-a-key"}, 401, "Unauthorized"),
    ("loop", 403, "Forbidden"),
])
def test_an_export_needs_the_admin_key(client, loop_key, headers, status, code):
    if headers == "loop":
        headers = {"Authorization": f"Bearer {loop_key}"}
    reply = client.get(EXPORT, headers=headers)
    assert_refused(reply, Case(status, code, ()))
