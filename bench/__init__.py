"""Benchmark of dbsage-tui against the raw PostgreSQL tools it wraps (issue 5). Entry point: ``bench.run``.

Not a test: nothing here asserts on time. It measures, on a private server it starts and destroys itself,
and writes ``bench/RESULTS.md``.
"""
