"""Featurisation, sampling and everything that touches Vowpal Wabbit (no HTTP, no ORM)."""
