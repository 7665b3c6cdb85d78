"""The ``dbsage-tui`` command: the full-screen app with no subcommand, the engine's subcommands otherwise.

Errors become one line on stderr (``error: ...``) and the exit code of the contract: 0 ok, 1 operation
failed (database unchanged), 2 bad input, 3 invalid snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import sys

from app.cli_commands import COMMANDS
from app.cli_parser import build_parser, split_psql_args
from app.common import debug_log, failure_text
from services.errors import EXIT_FAILED, DbsageError
from services.workspace import open_workspace


def main(argv: list[str] | None = None) -> int:
    # SIGTERM cancels like Ctrl-C: the running operation stops its child and removes partial files.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    argv, psql_args = split_psql_args(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.psql_args = psql_args
    json_mode = bool(getattr(args, "json", False))
    ws = None
    try:
        ws = open_workspace(args.db_url, args.dir, args.demo)
        if args.command is None:
            return importlib.import_module("app.tui").run_tui(ws)
        if ws.demo:
            print(f"SANDBOX: embedded PostgreSQL, demo database {ws.conn.dbname} at {ws.conn.display}; "
                  f"snapshots in {ws.store.directory}", file=sys.stderr)
        return asyncio.run(COMMANDS[args.command](ws, args))
    except DbsageError as exc:
        return _fail(exc.one_line(), exc.exit_code, json_mode, exc.extra)
    except KeyboardInterrupt:
        return _fail("Cancelled: work in progress was stopped and cleaned up.", EXIT_FAILED, json_mode)
    except BrokenPipeError:
        # The reader of our output went away (``dbsage-tui list | head``): nothing to tell it. Later
        # writes to stdout go nowhere instead of raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - never a traceback on the user's terminal
        return _fail(failure_text(exc)[0], EXIT_FAILED, json_mode)
    finally:
        if ws is not None and ws.demo_started:
            from services.demo import release_demo
            try:
                release_demo()
            except Exception as exc:  # noqa: BLE001 - the command's own outcome stands; say what is left
                where, why = debug_log(exc), (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                print(f"warning: the sandbox server may still be running: {why}"
                      + (f" (details in {where})" if where else ""), file=sys.stderr)


def _fail(message: str, code: int, json_mode: bool, extra: dict | None = None) -> int:
    if json_mode:
        print(json.dumps({"error": message, "exit_code": code, **(extra or {})}))
    print(f"error: {message}", file=sys.stderr)
    return code


def entry() -> None:
    """The console script: ``main``, then a quick exit. Everything that matters is done when ``main``
    returns (files fsynced, children reaped, locks released, the terminal restored), so the interpreter's
    own teardown, which frees every object one by one, is skipped; only what is still buffered on stdout
    and stderr is written first."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (``| head``): nothing more can reach it
            stream.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    # ``python -m app.cli`` (the benchmark's profile, a debugger): an ordinary exit, which they need to
    # see the end of the run; the console script is ``entry``.
    sys.exit(main())
