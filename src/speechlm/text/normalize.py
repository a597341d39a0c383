"""Optional text normalisation applied before the reference's ``clean_text``.

``clean_text`` (kept identical to v1.1.2) deletes every character outside ASCII, CJK and kana, so
"café" would become "caf" and full-width "ＡＢＣ１２３" would vanish. Normalising first keeps them:
NFKC folds full-width forms to ASCII, accents are stripped from Latin letters, and runs of white
space collapse to one space.
"""

from __future__ import annotations

import re
import unicodedata

_CJK = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\u4e00-\u9fff]")


def _strip_accents(ch: str) -> str:
    if _CJK.match(ch):
        return ch
    decomposed = unicodedata.normalize("NFKD", ch)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize_text(text: str) -> str:
    """NFKC, Latin accents removed, white space collapsed, ends stripped."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(_strip_accents(c) if ord(c) > 127 else c for c in text)
    # NFKC turns the ideographic full stop etc. into themselves; clean_text maps those later.
    return re.sub(r"[ \t\r\f\v]+", " ", text).strip()
