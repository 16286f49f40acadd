"""What every command-line entry point does around its work: logging, and errors turned into exit codes.

`sentiray` (sentiray.cli), `python -m ray_jobs.train` and `python -m ray_jobs.score` all run their work
through `run_entrypoint`, so a user-facing error reads and exits the same way from each.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from sentiray.errors import SentirayError

EXIT_ERROR = 1
# What a shell reports for a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


def run_entrypoint(work: Callable[[], int | None], prog: str | None = None) -> int:
    """Run `work` and return the process exit code: its own (0 when it returns None), 1 after a
    SentirayError, 130 after Ctrl-C.

    A SentirayError carries a message meant for the user: it is printed to stderr as `PROG: error: ...`
    (`error: ...` without a prog), with no traceback. Any other exception is a bug and propagates, with
    its traceback.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    lead = f"{prog}: " if prog else ""
    try:
        return int(work() or 0)
    except SentirayError as e:
        print(f"{lead}error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{lead}interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "run_entrypoint"]
