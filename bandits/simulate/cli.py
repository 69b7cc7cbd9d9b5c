"""``bandits simulate``: drive a running service with a synthetic world whose truth is known."""

from __future__ import annotations

import click

# numpy and requests load inside the command, so that `bandits --help` and the other commands
# do not pay for them.


@click.command()
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, envvar="BANDITS_URL",
              help="The service's base URL (or BANDITS_URL).")
@click.option("--key", envvar="BANDITS_KEY", help="The loop's key (or BANDITS_KEY).")
@click.option("--loop", "loop_name", default="sim", show_default=True, help="The loop to drive.")
@click.option("--decisions", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Threads calling choose at once.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0),
              help="Seeds the world, the contexts, the outcomes, their delays and the event ids.")
@click.option("--world", "world_name", type=click.Choice(["cb", "slates"]), default=None,
              help="cb: one offer per decision [the default]; slates: a page of slots with "
              "position effects (implied by --kind).")
@click.option("--kind", type=click.Choice(["ccb", "slates"]), default=None,
              help="With --world slates, the loop's kind: ccb (one shared pool, rewards per slot) "
              "or slates (each slot its own offers, one reward per page) [slates].")
@click.option("--slots", default=None, type=click.IntRange(1, 5),
              help="Slots on a page (--world slates): top, middle, bottom, ... [3]")
@click.option("--offers", default=None, type=click.IntRange(2, 1000),
              help="Offers: cb and ccb, the pool [10]; slates, the offers of each slot (at least "
              "--segments) [5].")
@click.option("--segments", default=5, show_default=True, type=click.IntRange(3, 60),
              help="User segments; at most the number of offers in the pool.")
@click.option("--report-every", default=100, show_default=True, type=click.IntRange(1),
              help="Decisions per learning-curve line.")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Divides the outcome delays (clicks 0-0.5 s, conversions 0.5-1.5 s later).")
@click.option("--create-loop/--no-create-loop", default=False, show_default=True,
              help="Create the loop first, of the world's kind (objectives click, conversion, "
              "revenue; -q uo -q u_).")
@click.option("--admin-key", envvar="BANDITS_ADMIN_KEY",
              help="An admin key for --create-loop (or BANDITS_ADMIN_KEY).")
@click.option("--event-prefix", default=None,
              help="Event ids are PREFIX-<index> [sim-<seed>]; change it to rerun a seed on one loop.")
@click.option("--direct", is_flag=True,
              help="No service: write the decisions straight into the decision log of "
              "--database-url, as an epsilon-greedy logger over each segment's best offer would "
              "have served them (known propensities; cb world only).")
@click.option("--database-url", envvar="BANDITS_DATABASE_URL", default=None,
              help="With --direct: the database (or BANDITS_DATABASE_URL) [sqlite:///bandits.db]; "
              "a SQLite file is created and migrated if needed.")
@click.option("--epsilon", default=0.2, show_default=True, type=click.FloatRange(0, 1),
              help="With --direct: the logger's share of uniformly random decisions.")
@click.option("--spacing", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="With --direct: seconds between decisions (the log ends now).")
def simulate(url: str, key: str | None, loop_name: str, decisions: int, concurrency: int, seed: int,
             world_name: str | None, kind: str | None, slots: int | None, offers: int | None,
             segments: int, report_every: int, speed: float, create_loop: bool, admin_key: str | None,
             event_prefix: str | None, direct: bool, database_url: str | None, epsilon: float,
             spacing: float) -> None:
    """Drive a running service over HTTP with a synthetic world (known click, conversion and
    revenue per user segment and offer, and per slot on a page), printing a learning curve
    against exact uniform and oracle values. Exits 1 when a decision or a reward failed.

    With --direct, fill a database's decision log instead (demos, notebooks, evaluation and
    tuning), without a service."""
    import requests

    from bandits.client import Client
    from bandits.simulate.driver import Delays, SimulationError, loop_config, run
    from bandits.simulate.slates import generate_slates
    from bandits.simulate.world import generate

    world_name = world_name or ("slates" if kind else "cb")
    if world_name == "cb":
        if kind is not None or slots is not None:
            option = "--kind" if kind is not None else "--slots"
            raise click.UsageError(f"{option} is for --world slates; the cb world drives a cb loop")
        if offers is not None and offers < 3:
            raise click.BadParameter("the cb world needs at least 3 offers", param_hint="--offers")
    kind = kind or ("slates" if world_name == "slates" else "cb")
    try:
        if world_name == "cb":
            world = generate(seed, segments=segments, offers=10 if offers is None else offers)
        else:
            world = generate_slates(seed, kind, segments=segments, offers=offers,
                                    slots=3 if slots is None else slots)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--segments/--offers/--slots") from None
    delays = Delays(speed=speed)
    if direct:
        if world_name != "cb":
            raise click.UsageError("--direct writes the cb world's decisions; drop --world/--kind")
        _write_directly(database_url, loop_name, world, decisions, seed, epsilon, spacing,
                        create_loop, event_prefix or f"sim-{seed}", loop_config(delays))
        return
    try:
        if create_loop:
            key = _create_loop(url, admin_key, loop_name, delays, kind)
        key = key or admin_key  # an admin key may use every loop
        if not key:
            raise click.UsageError(
                "give the loop's --key (or BANDITS_KEY), or --create-loop with --admin-key")
        with Client(url, key, loop=loop_name) as client:
            summary = run(client, world, decisions, concurrency=concurrency, seed=seed, delays=delays,
                          report_every=report_every, event_prefix=event_prefix, write=_echo)
    except SimulationError as exc:
        raise click.ClickException(str(exc)) from None
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from None
    if not summary.ok:
        raise click.exceptions.Exit(1)


def _create_loop(url: str, admin_key: str | None, name: str, delays, kind: str) -> str:
    from bandits.client import Client, ServiceError
    from bandits.simulate.driver import loop_config

    if not admin_key:
        raise click.UsageError("--create-loop needs --admin-key (or BANDITS_ADMIN_KEY)")
    with Client(url, admin_key) as admin:
        try:
            created = admin.create_loop(name, loop_config(delays, kind=kind))
        except ServiceError as exc:
            if exc.code == "LoopExists":
                raise click.ClickException(f"loop {name!r} exists; drive it with --no-create-loop "
                                           "--key KEY, or pick another --loop") from None
            raise click.ClickException(
                f"cannot create loop {name!r}: {exc.code}: {exc.message}") from None
    what = "loop" if kind == "cb" else f"{kind} loop"
    _echo(f"created {what} {name!r}; its key (shown once, keep it): {created['key']}")
    return created["key"]


def _write_directly(database_url: str | None, name: str, world, decisions: int, seed: int,
                    epsilon: float, spacing: float, create_loop: bool, prefix: str,
                    config: dict) -> None:
    """``--direct``: the decisions of an epsilon-greedy logger, written into the log of loop
    ``name`` (:func:`bandits.simulate.logged.write_log`), then what that logger is worth."""
    import sys
    from datetime import timedelta

    from sqlalchemy.exc import IntegrityError

    from bandits.config import ConfigError, load_settings
    from bandits.errors import ApiError
    from bandits.services.loops import LoopService
    from bandits.simulate.driver import SimulationError, loop_weights
    from bandits.simulate.logged import write_log
    from bandits.simulate.report import describe_world
    from bandits.simulate.world import OBJECTIVES, scalarise
    from bandits.store import loops as loop_store
    from bandits.store import migrate
    from bandits.store.db import Database

    try:
        settings = load_settings(**({"database_url": database_url} if database_url else {}))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    db = Database(settings, pool_size=2)
    try:
        if migrate.pending(db.engine):
            if not settings.is_sqlite:
                raise click.ClickException("the database schema is behind; run `bandits db upgrade` first")
            migrate.upgrade(db.engine)
        service = LoopService(db)
        try:
            if create_loop:
                created = service.create(name, config)
                _echo(f"created loop {name!r}; its key (shown once, keep it): {created['key']}")
            weights = loop_weights(service.get(name), world)
        except (ApiError, SimulationError) as exc:
            raise click.ClickException(getattr(exc, "message", str(exc))) from None
        with db.session() as session:
            loop_id = loop_store.get_loop(name, session=session).id
        for line in describe_world(world, weights):
            _echo(line)
        label = f"writing {decisions} decisions (epsilon {epsilon:g}) into loop {name!r}"
        with click.progressbar(length=decisions, label=label, file=sys.stderr) as bar:
            try:
                pmf = write_log(db, loop_id, world, decisions, weights=weights, epsilon=epsilon,
                                seed=seed, spacing=timedelta(seconds=spacing), prefix=prefix,
                                progress=lambda done: bar.update(done - bar.pos))
            except IntegrityError:
                raise click.ClickException(
                    f"loop {name!r} already has events {prefix}-<index>; give another "
                    "--event-prefix (or --seed)") from None
    finally:
        db.dispose()
    values = {"logger": world.value(lambda segment, context: pmf[segment]),
              "uniform": world.uniform_value(), "oracle": world.oracle_value(weights)}
    _echo("exact value per decision".ljust(26) + "".join(n.rjust(12) for n in (*OBJECTIVES, "reward")))
    for label, value in values.items():
        cells = [value[n] for n in OBJECTIVES] + [scalarise(value, weights)]
        _echo(label.ljust(26) + "".join(f"{cell:12.4f}" for cell in cells))
    _echo(f"{decisions} decisions written to {db.engine.url.render_as_string(hide_password=True)}")


def _echo(line: str) -> None:
    click.echo(line)  # click.echo flushes, so progress shows as it happens
