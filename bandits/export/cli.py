"""``bandits export``: a loop's decision log as DSJSON or Parquet, to a file or stdout."""

from __future__ import annotations

import sys

import click

# pyarrow loads inside the command (Parquet only), so that the other commands do not pay for it.


@click.command()
@click.argument("loop")
@click.option("--format", "export_format", type=click.Choice(["dsjson", "parquet"]), default="dsjson",
              show_default=True, help="dsjson: lines `vw --dsjson` reads; parquet: one row per decision.")
@click.option("--since", default=None, help="Window start, ISO 8601 (UTC if no zone); default: the first decision.")
@click.option("--until", default=None, help="Window end (exclusive), ISO 8601; default: after the last decision.")
@click.option("-o", "--output", default="-", show_default=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="The file to write (- for stdout).")
def export(loop: str, export_format: str, since: str | None, until: str | None, output: str) -> None:
    """Export LOOP's decision log over a window, in time order (docs/export.md).

    Streams page by page: memory does not grow with the log. Progress goes to stderr.
    """
    from bandits.cli import _migrated_database, _run
    from bandits.export.window import dsjson_stream, open_export, parse_query

    if export_format == "parquet" and output == "-" and sys.stdout.isatty():
        raise click.UsageError("a Parquet file is binary: give -o FILE or redirect stdout")
    raw = {"format": export_format, **{k: v for k, v in (("since", since), ("until", until)) if v}}
    query = _run(lambda: parse_query(raw))
    database = _migrated_database()
    try:
        opened = _run(lambda: open_export(database, loop, query))
        total = opened.count()
        with click.progressbar(length=total, label=f"export {loop}", file=sys.stderr) as bar, \
                click.open_file(output, "wb") as sink:
            if export_format == "parquet":
                from bandits.export.parquet import parquet_stream

                chunks = parquet_stream(opened.config, opened.pages(), bar.update)
            else:
                chunks = _counted(dsjson_stream(opened), bar.update)
            for chunk in chunks:
                sink.write(chunk)
    finally:
        database.dispose()
    where = "stdout" if output == "-" else output
    click.echo(f"{total} decisions of loop {loop!r} exported as {export_format} to {where}", err=True)


def _counted(chunks, update):
    """DSJSON chunks, telling ``update`` how many lines each holds (progress)."""
    for chunk in chunks:
        update(chunk.count(b"\n"))
        yield chunk
