"""The ``bandits`` command line (click)."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import orjson

from bandits.config import ConfigError, Settings, load_settings
from bandits.errors import ApiError


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _database():
    from bandits.store.db import Database

    return Database(_settings(), pool_size=2)


def _migrated_database():
    """The database, refused with a clear message while its schema is behind the code."""
    from bandits.store import migrate

    database = _database()
    if migrate.pending(database.engine):
        raise click.ClickException("the database schema is behind; run `bandits db upgrade` first")
    return database


def _print_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _run(action):
    try:
        return action()
    except ApiError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None


@click.group()
@click.version_option(package_name="bandits")
def main() -> None:
    """bandits: a contextual-bandit decision service. Settings come from BANDITS_* variables."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Threads per worker (gthread); their decisions share group commits.")
@click.option("--pin-workers/--no-pin-workers", default=True, show_default=True,
              envvar="BANDITS_PIN_WORKERS",
              help="Keep each worker on one CPU, spread over the CPUs this process may use "
                   "(with --threads above 1; see docs/operations.md).")
@click.option("--demo/--no-demo", default=True, show_default=True,
              help="Create the `demo` loop on first start.")
@click.option("--access-log/--no-access-log", default=False, show_default=True)
@click.option("--trainer/--no-trainer", default=None,
              help="Also run `bandits train` beside the api (default: on with SQLite, off with Postgres).")
@click.option("--worker/--no-worker", default=None,
              help="Also run `bandits worker` (evaluation jobs) beside the api (default: on with "
                   "SQLite, off with Postgres).")
def serve(host: str, port: int, workers: int, threads: int, pin_workers: bool, demo: bool,
          access_log: bool, trainer: bool | None, worker: bool | None) -> None:
    """Run the HTTP api under gunicorn."""
    from bandits.server import GunicornServer, gunicorn_options, start_child, stop_children
    from bandits.services.loops import bootstrap
    from bandits.store import migrate

    settings = _settings()
    db = _database()
    if migrate.pending(db.engine):
        if not settings.is_sqlite:
            raise click.ClickException("the database schema is behind; run `bandits db upgrade` first")
        migrate.upgrade(db.engine)
    for line in bootstrap(db, admin_key_from_env=bool(settings.admin_key), demo=demo):
        click.echo(line)
    db.dispose()
    click.echo(f"bandits serving on http://{host}:{port} ({workers} workers x {threads} threads, "
               f"database {db.engine.url.render_as_string(hide_password=True)})")
    sys.stdout.flush()
    options = gunicorn_options(host, port, workers, threads, access_log, pin_workers)
    children, parent = [], os.getpid()
    for name, wanted in (("trainer", trainer), ("worker", worker)):
        if wanted if wanted is not None else settings.is_sqlite:  # dev mode: one command runs all
            child = start_child(name)
            click.echo(f"{name} running beside the api (pid {child.process.pid})")
            children.append(child)
    if children:
        options["on_exit"] = lambda _server: stop_children(children)
    try:
        GunicornServer(settings, options).run()
    finally:  # e.g. gunicorn could not bind; not in its forked workers, which exit through here too
        if os.getpid() == parent:
            stop_children(children)


@main.command()
@click.option("--loop", "loop_names", multiple=True, help="Train only this loop (repeatable).")
@click.option("--once", is_flag=True, help="One pass over the loops, then exit.")
@click.option("-v", "--verbose", is_flag=True, help="Log every published snapshot.")
def train(loop_names: tuple[str, ...], once: bool, verbose: bool) -> None:
    """Learn from the decision log and publish model snapshots (the only writer of models).

    Safe to run on several hosts: each loop is trained by one process at a time (the others wait).
    """
    import logging
    import signal

    from bandits.services.trainer import TrainerRunner

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    runner = TrainerRunner(_database(), list(loop_names) or None)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runner.stopping.set())
    click.echo("bandits trainer running" + (f" for {', '.join(loop_names)}" if loop_names else ""))
    runner.run(once=once)


@main.command()
@click.option("--once", is_flag=True, help="Run the jobs waiting now, then exit.")
@click.option("--stale-after", default=120.0, show_default=True, type=click.FloatRange(1.0),
              help="Seconds without a heartbeat after which a running job is claimed again.")
@click.option("-v", "--verbose", is_flag=True, help="Log every job.")
def worker(once: bool, stale_after: float, verbose: bool) -> None:
    """Run queued jobs (evaluations, tunings). Safe to run several: each job is claimed by one worker."""
    import logging

    from bandits.jobs.worker import Worker

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    runner = Worker(_migrated_database(), stale_after=stale_after)
    click.echo(f"bandits worker {runner.name} running")
    try:
        runner.run(once=once)
    except KeyboardInterrupt:  # a job cut short is claimed again once its heartbeat is stale
        pass
    finally:
        runner.db.dispose()


def candidate_shorthand(text: str) -> dict[str, Any]:
    """``logging``, ``uniform``, ``baseline``, ``constant:ID``, ``model:N``, ``vw:ARGS`` or JSON."""
    if text.startswith("{"):
        return _json_or_string(text)
    kind, _, value = text.partition(":")
    if kind == "constant":
        return {"kind": kind, "action": value}
    if kind == "model":
        return {"kind": kind, "version": int(value) if value.isdigit() else value}
    if kind == "vw":
        return {"kind": kind, "vw_args": value}
    return {"kind": kind}


@main.command()
@click.argument("loop")
@click.option("--since", required=True, help="Window start, ISO 8601 (UTC if no zone).")
@click.option("--until", required=True, help="Window end (exclusive), ISO 8601.")
@click.option("--candidate", "candidates", multiple=True, required=True,
              help="logging | uniform | baseline | constant:ID | model:N | vw:ARGS | JSON (repeatable).")
@click.option("--objective", "objectives", multiple=True, help="Default: every objective and reward.")
@click.option("--estimator", "estimators", multiple=True, help="Default: ips, snips, dr.")
@click.option("--confidence", default=0.95, show_default=True, type=float)
@click.option("--bootstrap", default=0, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
def evaluate(loop: str, since: str, until: str, candidates: tuple[str, ...],
             objectives: tuple[str, ...], estimators: tuple[str, ...], confidence: float,
             bootstrap: int, seed: int, as_json: bool) -> None:
    """Run an evaluation job now, in this process, and print its table (the job is recorded)."""
    from bandits.jobs.table import result_table
    from bandits.jobs.worker import EvaluationService, worker_name
    from bandits.schemas import EvaluationRequest, parse

    body: dict[str, Any] = {
        "window": {"since": _zoned(since), "until": _zoned(until)},
        "candidates": [candidate_shorthand(text) for text in candidates],
        "confidence": confidence, "bootstrap": bootstrap, "seed": seed,
    }
    if objectives:
        body["objectives"] = list(objectives)
    if estimators:
        body["estimators"] = [_json_or_string(text) for text in estimators]
    done = _run_job_here("evaluation", lambda database, name: EvaluationService(database).submit(
        loop, parse(EvaluationRequest, body, "InvalidEvaluation", 422), claimed_by=name),
        lambda database, job_id: EvaluationService(database).get(loop, job_id), worker_name)
    if as_json:
        _print_json(done)
    else:
        click.echo(result_table(done["result"]))


def _zoned(moment: str) -> str:
    """An ISO 8601 moment with its zone (UTC when it has none)."""
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        raise click.BadParameter(f"{moment!r} is not an ISO 8601 date or time") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).isoformat()


def _guardrail(text: str) -> dict[str, Any]:
    objective, _, drop = text.rpartition(":")
    try:
        return {"objective": objective, "max_drop": float(drop)}
    except ValueError:
        raise click.BadParameter(f"{text!r}: give OBJECTIVE:MAX_DROP, e.g. click:0.02",
                                 param_hint="--guardrail") from None


def _run_job_here(noun: str, submit, get, worker_name) -> dict[str, Any]:
    """Submit a job claimed by this process, run it with a progress bar, return it finished."""
    from bandits.jobs.worker import run_job

    database = _migrated_database()
    try:
        name = worker_name() + f":{noun}"
        job = _run(lambda: submit(database, name))
        with click.progressbar(length=1000, label=f"{noun} {job['id']}", file=sys.stderr) as bar:
            def progress(fraction: float) -> None:
                bar.update(int(fraction * 1000) - bar.pos)

            run_job(database, job["id"], name, progress)
        done = _run(lambda: get(database, job["id"]))
    finally:
        database.dispose()
    if done["status"] != "succeeded":
        raise click.ClickException(f"{noun} {job['id']} failed: {done['error']}")
    return done


@main.command()
@click.argument("loop")
@click.option("--since", required=True, help="Window start, ISO 8601 (UTC if no zone).")
@click.option("--until", required=True, help="Window end (exclusive), ISO 8601.")
@click.option("--primary", required=True, help="The objective to maximise.")
@click.option("--guardrail", "guardrails", multiple=True,
              help="OBJECTIVE:MAX_DROP, e.g. click:0.02 (at most a 2 % drop; repeatable).")
@click.option("--confidence", default=0.95, show_default=True, type=float)
@click.option("--budget", default=200, show_default=True, type=int, help="Weight candidates to score.")
@click.option("--split", default="0.6,0.2,0.2", show_default=True, help="fit,tune,holdout shares.")
@click.option("--fit-limit", default=200_000, show_default=True, type=int,
              help="Fit the reward models on at most this many of the fit share's newest events.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
def tune(loop: str, since: str, until: str, primary: str, guardrails: tuple[str, ...],
         confidence: float, budget: int, split: str, fit_limit: int, seed: int, as_json: bool) -> None:
    """Run a weight-tuning job now, in this process, and print its recommendation (the job is
    recorded; apply it with POST /v1/loops/LOOP/tunings/ID/apply)."""
    from bandits.jobs.table import tuning_table
    from bandits.jobs.worker import TuningService, worker_name
    from bandits.schemas import TuningRequest, parse

    try:
        shares = dict(zip(("fit", "tune", "holdout"), (float(x) for x in split.split(",")), strict=True))
    except ValueError:
        raise click.BadParameter(f"{split!r}: give three shares, e.g. 0.6,0.2,0.2",
                                 param_hint="--split") from None
    body: dict[str, Any] = {
        "window": {"since": _zoned(since), "until": _zoned(until)}, "primary": primary,
        "guardrails": [_guardrail(text) for text in guardrails], "confidence": confidence,
        "budget": budget, "split": shares, "fit_limit": fit_limit, "seed": seed,
    }
    done = _run_job_here("tuning", lambda database, name: TuningService(database).submit(
        loop, parse(TuningRequest, body, "InvalidTuning", 422), claimed_by=name),
        lambda database, job_id: TuningService(database).get(loop, job_id), worker_name)
    if as_json:
        _print_json(done)
    else:
        click.echo(tuning_table(done["result"]))
        click.echo(f"tuning {done['id']}: apply with POST /v1/loops/{loop}/tunings/{done['id']}/apply")


@main.group()
def db() -> None:
    """Database schema."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Apply the Alembic migrations in migrations/."""
    from bandits.store import migrate

    database = _database()
    migrate.upgrade(database.engine, revision)
    click.echo(f"database at {revision}: {database.engine.url.render_as_string(hide_password=True)}")


@main.group()
def loops() -> None:
    """Create, show and configure loops."""


def _loop_service():
    from bandits.services.loops import LoopService

    return LoopService(_migrated_database())


def _json_or_string(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _assignments(pairs: tuple[str, ...]) -> dict[str, Any]:
    changes = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep or not field:
            raise click.BadParameter(f"{pair!r} is not FIELD=VALUE", param_hint="SETTINGS")
        changes[field] = _json_or_string(value)
    return changes


@loops.command("create")
@click.argument("name")
@click.argument("settings", nargs=-1)
@click.option("--config", "config_json", help="The whole config as JSON (or @file.json).")
def loops_create(name: str, settings: tuple[str, ...], config_json: str | None) -> None:
    """Create loop NAME; SETTINGS are FIELD=VALUE (VALUE as JSON when it parses)."""
    from bandits.schemas import LoopCreate, parse

    config = _config_argument(config_json)
    config.update(_assignments(settings))
    request = _run(lambda: parse(LoopCreate, {"name": name, "config": config}, "InvalidLoopRequest"))
    created = _run(lambda: _loop_service().create(request.name, request.config))
    _print_json(created)
    click.echo("The key above is shown once; keep it.", err=True)


def _config_argument(config_json: str | None) -> dict[str, Any]:
    if config_json is None:
        return {}
    try:
        text = Path(config_json[1:]).read_text() if config_json.startswith("@") else config_json
    except OSError as exc:
        raise click.BadParameter(f"cannot read {config_json[1:]!r}: {exc.strerror}",
                                 param_hint="--config") from None
    value = _json_or_string(text)
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--config")
    return value


@loops.command("show")
@click.argument("name")
def loops_show(name: str) -> None:
    """Print loop NAME's config."""
    _print_json(_run(lambda: _loop_service().get(name)))


@loops.command("list")
def loops_list() -> None:
    """List loops."""
    for loop in _run(lambda: _loop_service().list()):
        click.echo(f"{loop['name']}\t{loop['kind']}\tconfig v{loop['config_version']}")


@loops.command("set")
@click.argument("name")
@click.argument("settings", nargs=-1, required=True)
def loops_set(name: str, settings: tuple[str, ...]) -> None:
    """Change loop NAME: FIELD=VALUE ... (e.g. vw_args='-q ua' max_actions=50)."""
    result = _run(lambda: _loop_service().patch(name, _assignments(settings)))
    _print_json(result)
    if result["model_reset"]:
        click.echo("This change starts a new model.", err=True)


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--loop", "loop_name", default=None, help="A key for this loop (default: an admin key).")
def keys_create(loop_name: str | None) -> None:
    """Create a key and print it (shown once)."""
    click.echo(_run(lambda: _loop_service().create_key(loop_name)))


@keys.command("revoke")
@click.argument("prefix")
def keys_revoke(prefix: str) -> None:
    """Revoke the keys whose first 8 characters are PREFIX."""
    from bandits.store.loops import revoke_key

    if len(prefix) < 8:  # keys are found by their stored 8-character prefix
        raise click.BadParameter("give at least the key's first 8 characters", param_hint="PREFIX")
    database = _migrated_database()
    with database.session() as session:
        count = revoke_key(prefix, session=session)
    if count == 0:
        raise click.ClickException(f"no live key starts with {prefix[:8]!r}")
    click.echo(f"revoked {count} key(s)")


from bandits.simulate.cli import simulate  # noqa: E402  (imports only click until it runs)

main.add_command(simulate)

from bandits.export.cli import export  # noqa: E402  (imports only click until it runs)

main.add_command(export)


if __name__ == "__main__":  # pragma: no cover
    main()
