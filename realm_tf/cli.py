"""What every realm_tf command line does around its work: report the result, or the user's error."""

import argparse
import sys
from typing import Any, Callable, Optional, Sequence, Tuple, Type


def run_command(run: Callable[[Optional[Sequence[str]]], Any], report: Callable[[Any], str],
                user_errors: Tuple[Type[Exception], ...], argv: Optional[Sequence[str]] = None) -> int:
    """Runs `run(argv)` and prints `report(result)`; returns the exit status.

    `user_errors` are the errors of bad input (each names its file, line or field): they
    print `error: <message>` and give status 2, without a traceback. Anything else is a
    bug and propagates.
    """
    try:
        result = run(argv)
    except user_errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(result))
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
