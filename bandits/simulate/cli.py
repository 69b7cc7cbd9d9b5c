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
def simulate(url: str, key: str | None, loop_name: str, decisions: int, concurrency: int, seed: int,
             world_name: str | None, kind: str | None, slots: int | None, offers: int | None,
             segments: int, report_every: int, speed: float, create_loop: bool, admin_key: str | None,
             event_prefix: str | None) -> None:
    """Drive a running service over HTTP with a synthetic world (known click, conversion and
    revenue per user segment and offer, and per slot on a page), printing a learning curve
    against exact uniform and oracle values. Exits 1 when a decision or a reward failed."""
    import requests

    from bandits.client import Client
    from bandits.simulate.driver import Delays, SimulationError, run
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


def _echo(line: str) -> None:
    click.echo(line)  # click.echo flushes, so progress shows as it happens
