"""Open log exports: a loop's decision log as DSJSON (what ``vw --dsjson`` reads) or Parquet.

:mod:`~bandits.export.window` checks a request and streams its window page by page;
:mod:`~bandits.export.dsjson` and :mod:`~bandits.export.parquet` write the formats;
:mod:`~bandits.export.cli` is ``bandits export``. docs/export.md describes both formats.
(Nothing is imported here, so that ``bandits --help`` does not load the store nor VW.)
"""
