"""The one exception type users see.

Every problem a user can cause (bad audio, empty text, wrong checkpoint, out-of-range parameter)
is raised as :class:`SpeechLMError`. The CLI prints it as one line without a traceback, the HTTP
API maps it to a 4xx JSON body, the web UI shows it as a message.
"""

from __future__ import annotations


class SpeechLMError(Exception):
    """A user-facing error: says what was wrong and, when known, how to fix it.

    Args:
        message: what went wrong, naming the offending input.
        hint: what to do about it (appended after " — ").
        field: the request / config field the error is about (used by the HTTP API).
        status: HTTP status the API should answer with (4xx).
    """

    def __init__(self, message: str, hint: str | None = None, *, field: str | None = None, status: int = 400):
        self.message = message
        self.hint = hint
        self.field = field
        self.status = status
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class CheckpointError(SpeechLMError):
    """A checkpoint is missing, of the wrong kind, or does not match its config."""


class AudioError(SpeechLMError):
    """Audio could not be read, or is unusable (empty, too short, too long)."""


class InputError(SpeechLMError):
    """A parameter or input value is out of range or malformed."""


def check_range(name: str, value, lo=None, hi=None, *, lo_open: bool = False, hi_open: bool = False):
    """Raise :class:`InputError` unless ``lo <= value <= hi`` (bounds optional, open if asked)."""
    if value is None:
        raise InputError(f"{name} must be set", f"pass {name}=<value>", field=name)
    bad = False
    if lo is not None:
        bad |= value <= lo if lo_open else value < lo
    if hi is not None:
        bad |= value >= hi if hi_open else value > hi
    if bad:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        rng = f"{lb}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{rb}"
        raise InputError(f"{name}={value} is out of range {rng}", f"choose {name} in {rng}", field=name)
    return value
