"""What every realm_tf command line does around its work: report the result, or the user's error."""

import argparse
import sys
import traceback
from typing import Any, Callable, Optional, Sequence

from realm_tf.errors import RealmError

VERBOSE_FLAG = "--verbose"
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report it.

# OSError: a missing or unreadable path, a full disk, a refused connection; the message names the path or address.
USER_ERRORS = (RealmError, OSError)


def add_verbose_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds `--verbose`, which `run_command` reads: an error is printed with its traceback."""
    parser.add_argument(VERBOSE_FLAG, action="store_true",
                        help="on an error, print its traceback too (by default: one line, `error: ...`)")
    return parser


def run_command(run: Callable[[Optional[Sequence[str]]], Any], report: Callable[[Any], str],
                argv: Optional[Sequence[str]] = None) -> int:
    """Runs `run(argv)` and prints `report(result)`; returns the exit status.

    A user error (a `RealmError`, or an `OSError` such as a missing path) prints
    `error: <message>` on stderr, and its hint if it has one, and gives its exit status
    (2 unless the error says otherwise); with `--verbose` in `argv` the traceback comes
    first. Ctrl-C gives status 130 and one line. Anything else is a bug and propagates.
    """
    verbose = VERBOSE_FLAG in (sys.argv[1:] if argv is None else argv)
    try:
        result = run(argv)
    except USER_ERRORS as e:
        if verbose:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        if getattr(e, "hint", None):
            print(f"({e.hint})", file=sys.stderr)
        return getattr(e, "exit_status", 2)
    except KeyboardInterrupt:
        if verbose:
            traceback.print_exc()
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    text = report(result)
    if text:
        print(text)
    return 0


def positive_int(text: str) -> int:
    """An argparse `type` for counts: an integer of at least 1, or a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value
