"""Long-text splitting into segments of at most ``length`` UTF-8 bytes (Fish Speech v1.1.2 rules).

Break at sentence ends (``.!?``, but not inside a decimal number), then at commas, then at spaces,
then anywhere; finally merge neighbours greedily while they fit. Segments made only of spaces and
punctuation are dropped.
"""

from __future__ import annotations

import re
import string
from typing import Callable, Iterable, Iterator

from speechlm.text.clean import clean_text

_FLOAT_RE = re.compile(r"(\d+)\.(\d+)")
_PROTECTED_RE = re.compile(r"<(\d+)_f_(\d+)>")


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _break(pieces: Iterable[str], length: int, cut_after: Callable[[str, str], bool]) -> Iterator[str]:
    """Cut every piece longer than ``length`` bytes wherever ``cut_after(running_piece, char)`` says."""
    for piece in pieces:
        if utf8_len(piece) <= length:
            yield piece
            continue
        cur = ""
        for ch in piece:
            cur += ch
            if cut_after(cur, ch):
                yield cur
                cur = ""
        if cur:
            yield cur


def _break_at(pieces: Iterable[str], length: int, marks: set[str]) -> Iterator[str]:
    """Cut every piece longer than ``length`` bytes after each character in ``marks``."""
    return _break(pieces, length, lambda cur, ch: ch in marks)


def _break_by_length(pieces: Iterable[str], length: int) -> Iterator[str]:
    """Cut every piece longer than ``length`` bytes as soon as the running piece reaches it."""
    return _break(pieces, length, lambda cur, ch: utf8_len(cur) >= length)


def _keep(segment: str, out: list[str]) -> None:
    segment = segment.strip()
    if segment and not all(c.isspace() or c in string.punctuation for c in segment):
        out.append(segment)


def split_text(text: str, length: int) -> list[str]:
    """Clean ``text`` and split it into segments of at most ``length`` UTF-8 bytes (where possible)."""
    text = _FLOAT_RE.sub(r"<\1_f_\2>", clean_text(text))  # protect "3.14" from the sentence split
    pieces = _break_at([text], length, {".", "!", "?"})
    pieces = (_PROTECTED_RE.sub(r"\1.\2", p) for p in pieces)
    pieces = _break_at(pieces, length, {","})
    pieces = _break_at(pieces, length, {" "})
    pieces = list(_break_by_length(pieces, length))

    segments: list[str] = []
    cur = ""
    for piece in pieces:
        if utf8_len(cur) + utf8_len(piece) <= length:
            cur += piece
        else:
            _keep(cur, segments)
            cur = piece
    if cur:
        _keep(cur, segments)
    return segments
