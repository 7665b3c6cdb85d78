"""The dbsage-tui engine: snapshot rules, pg_dump/psql orchestration and catalog inspection.

Everything here is UI-free (a test asserts that importing it never imports Textual), so the CLI and the
Textual app are two thin faces over the same code.
"""

__version__ = "0.1.0"
