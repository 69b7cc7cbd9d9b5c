"""Persistence: SQLAlchemy models and data functions (no HTTP). Functions take ``session`` or
``connection`` as a keyword argument and never commit: the caller owns the transaction."""
