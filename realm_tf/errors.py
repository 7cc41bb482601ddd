"""The base of every error that bad input, not a bug, raises in realm_tf.

A command line prints such an error as one line, `error: <message>`, and exits with its
`exit_status`; the message names the file, line or field at fault. Each subclass keeps
the built-in base it had (ValueError for bad values, RuntimeError for a server that
refuses), so callers that catch those still do.
"""

from typing import Optional


class RealmError(Exception):
    """An error of the user's input or environment; its message names what is at fault.

    Attributes:
      exit_status: what a command line exits with on this error (2: bad input).
      hint: an optional second line, how to get past the error.
    """

    exit_status: int = 2
    hint: Optional[str] = None
