"""Benchmarks: scripts run by hand or by ``nox -s bench``, never by pytest."""
