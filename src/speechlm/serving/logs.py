"""The server's log lines: one per record, an ISO 8601 timestamp, control characters escaped; or JSON.

Anything a client sends (a path with ``%0a`` in it, a voice id, a header) may end up in a message, so
both formats escape control characters, and quotes in the text format: a client cannot forge a second
line. On a terminal the CLI's coloured handler stays; into a file or a pipe, lines are never wrapped.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone

# C0, DEL, C1 and the Unicode line/paragraph separators: everything a log reader may take as a break.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_UNSAFE_QUOTED = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\"\\]")


def _escape_char(match: re.Match) -> str:
    c = match.group()
    if c in _NAMED:
        return _NAMED[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def escape(text: object, quotes: bool = False) -> str:
    """``text`` with control characters (and, with ``quotes``, ``"`` and ``\\``) as backslash escapes."""
    return (_UNSAFE_QUOTED if quotes else _UNSAFE).sub(_escape_char, str(text))


def iso_time(created: float) -> str:
    """A record's time as ISO 8601 in UTC with milliseconds, e.g. ``2026-12-04T15:38:52.123+00:00``."""
    return datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """``<ISO time> <LEVEL> <logger>: <message>``; the message on one line (a traceback follows it)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{iso_time(record.created)} {record.levelname} {record.name}: {escape(record.getMessage())}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return f"{line}\n{record.exc_text}" if record.exc_text else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time, level, logger, message`` (+ ``access`` fields, + ``exception``)."""

    def format(self, record: logging.LogRecord) -> str:
        body = {"time": iso_time(record.created), "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            body.update(access)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=True, default=str)


class EscapeFilter(logging.Filter):
    """Escapes control characters in a record's message for handlers whose formatter does not."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` at each record (as the CLI's rich console does), not to the
    stream that was stderr when logging was configured (which a test harness may have closed since)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def make_handler(log_format: str, stream=None) -> logging.Handler:
    """A stream handler (the current stderr by default) with the formatter of ``log_format`` (text | json)."""
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    return handler


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """Root logging for the server: JSON lines, or text lines when stderr is not a terminal.

    On a terminal with ``log_format=text`` the handlers already installed (the CLI's) stay.
    """
    root = logging.getLogger()
    if log_format == "text" and sys.stderr.isatty() and root.handlers:
        for handler in root.handlers:  # the CLI's coloured handler: escape there too
            if not any(isinstance(f, EscapeFilter) for f in handler.filters):
                handler.addFilter(EscapeFilter())
        return
    logging.basicConfig(level=getattr(logging, str(level).upper(), logging.INFO),
                        handlers=[make_handler(log_format)], force=True)
