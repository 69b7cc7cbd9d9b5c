"""The Parquet export (`bandits export --format parquet`, and over HTTP): one row per decision,
the logged propensities and PMFs, outcomes per objective, the slots of ccb and slates loops."""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from bandits.cli import main
from tests.conftest import ADMIN
from tests.export.logs import create_loop, log_decisions, stored


def _cli(database_url: str, *args: str):
    result = CliRunner(env={"BANDITS_DATABASE_URL": database_url}).invoke(main, ["export", *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("kind", ["cb", "ccb", "slates"])
def test_a_parquet_export_reads_back_with_every_decision_and_its_propensities(
        app, client, db, database_url, tmp_path, kind):
    log_decisions(client, "loop", kind, create_loop(app, "loop", kind))
    path = tmp_path / "loop.parquet"

    result = _cli(database_url, "loop", "--format", "parquet", "-o", str(path), "--since", "2000-01-01")

    assert "12 decisions" in result.stderr
    table = pq.read_table(path)
    logged = stored(db, "loop", kind)
    assert table.num_rows == len(logged) == 12
    rows = table.to_pylist()
    assert [row["event_id"] for row in rows] == [d.event_id for d in logged]
    assert [row["probability"] for row in rows] == [d.probability for d in logged]
    assert [row["pmf"] for row in rows] == [d.pmf for d in logged]
    assert [row["reward"] for row in rows] == pytest.approx([d.reward for d in logged])
    assert [row["skip_learn"] for row in rows] == [d.unactivated for d in logged]
    frame = pd.read_parquet(path)  # what an analyst does with the file
    assert len(frame) == 12
    assert frame["probability"].tolist() == [d.probability for d in logged]
    assert frame["event_id"].tolist() == [d.event_id for d in logged]
    assert table.schema.field("pmf").type.value_type.bit_width == 64
    assert {"outcome_click", "outcome_revenue", "model_version", "context", "actions"} <= set(table.column_names)
    assert json.loads(rows[0]["context"]) == {"user": {"country": "AR", "age": 31, "segments": ["new", "mobile"], "vip": True}}
    if kind == "cb":
        assert "slots" not in table.column_names
    else:
        for row, decision in zip(rows, logged):
            assert [s["probability"] for s in row["slots"]] == [s["probability"] for s in decision.slots]
            assert [s["pmf"] for s in row["slots"]] == [s["pmf"] for s in decision.slots]
            if kind == "ccb":
                assert [s["reward"] for s in row["slots"]] == pytest.approx(
                    [decision.slot_rewards[s["id"]] for s in decision.slots])


def test_the_window_and_one_row_group_per_page(app, client, db, database_url, tmp_path, monkeypatch):
    from bandits.export import window

    log_decisions(client, "loop", "cb", create_loop(app, "loop", "cb"))
    monkeypatch.setattr(window, "PAGE_SIZE", 5)
    path = tmp_path / "all.parquet"
    _cli(database_url, "loop", "--format", "parquet", "-o", str(path))
    assert pq.ParquetFile(path).metadata.num_row_groups == 3  # 5 + 5 + 2

    nothing = tmp_path / "none.parquet"
    _cli(database_url, "loop", "--format", "parquet", "-o", str(nothing), "--until", "2000-01-01")
    assert pq.read_table(nothing).num_rows == 0


def test_parquet_over_http_is_the_same_table(app, client, db):
    log_decisions(client, "loop", "slates", create_loop(app, "loop", "slates"))
    reply = client.get("/v1/loops/loop/export?format=parquet", headers=ADMIN)
    assert reply.status_code == 200
    assert reply.mimetype == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(reply.get_data()))
    assert table.column("probability").to_pylist() == [d.probability for d in stored(db, "loop", "slates")]


def test_the_cli_writes_dsjson_to_stdout(app, client, database_url):
    log_decisions(client, "loop", "ccb", create_loop(app, "loop", "ccb"), n=4)
    result = _cli(database_url, "loop")
    lines = result.stdout.splitlines()
    assert [json.loads(line)["EventId"] for line in lines] == ["e0", "e1", "e2", "e3"]
