"""Text normalisation applied before tokenizing, exactly as Fish Speech v1.1.2 does it.

Quirks kept on purpose (they change the token ids): ``...`` becomes ``…`` and is then deleted,
there is no strip after deletion, and the function is not idempotent.
"""

from __future__ import annotations

import re

# Punctuation mapped to ASCII before unknown characters are deleted.
SYMBOL_MAP: dict[str, str] = {
    "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",", "、": ",",
    "...": "…",
    "“": "'", "”": "'", "‘": "'", "’": "'", "（": "'", "）": "'", "(": "'", ")": "'",
    "《": "'", "》": "'", "【": "'", "】": "'", "[": "'", "]": "'",
    "—": "-", "～": "-", "~": "-", "・": "-",
    "「": "'", "」": "'", ";": ",", ":": ",",
}
# Kept code-point ranges: ASCII, CJK ideographs, hiragana, katakana, katakana extensions.
KEPT_RANGES = ((0x0000, 0x007F), (0x4E00, 0x9FFF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x31F0, 0x31FF))

_SYMBOL_RE = re.compile("|".join(re.escape(s) for s in SYMBOL_MAP))
_UNKNOWN_RE = re.compile("[^" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in KEPT_RANGES) + "]")


def clean_text(text: str) -> str:
    """Strip, map CJK/typographic punctuation to ASCII, delete characters outside the kept scripts."""
    text = _SYMBOL_RE.sub(lambda m: SYMBOL_MAP[m.group()], text.strip())
    return _UNKNOWN_RE.sub("", text)
