"""Text normalisation applied before the reference's ``clean_text``.

``clean_text`` (kept identical to v1.1.2) deletes every character outside ASCII, CJK and kana, so
"café" would become "caf" and full-width "ＡＢＣ１２３" would vanish. Normalising first keeps them:
NFKC folds full-width forms to ASCII, accents are stripped from Latin letters, and runs of white
space collapse to one space. Then numbers, dates, times, money, percentages and units are spelled
out (English: :mod:`speechlm.text.numbers_en`, Chinese: :mod:`speechlm.text.numbers_zh`): the v1.1.2
web UI did this for Chinese (on by default) because the model reads digits unreliably. With
``language=None`` each number takes the language of the text around it, so mixed CJK + Latin text
works.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable, Iterable, Optional

_CJK = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
LANGUAGES = ("en", "zh")
Rule = tuple[re.Pattern, Callable[[re.Match], str]]


def _strip_accents(ch: str) -> str:
    if _CJK.match(ch):
        return ch
    decomposed = unicodedata.normalize("NFKD", ch)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _nearest_letter(text: str, index: int, step: int) -> Optional[str]:
    """The first CJK or Latin letter from ``index`` going ``step`` (-1 left, +1 right), else None."""
    while 0 <= index < len(text):
        ch = text[index]
        if _CJK.match(ch):
            return "zh"
        if _LATIN.match(ch):
            return "en"
        index += step
    return None


def language_at(text: str, start: int, end: int, default: str = "en") -> str:
    """The language of the span ``text[start:end]``: CJK inside it or next to it makes it Chinese.

    A span directly touching a CJK character (``3个``, ``重5kg``) is Chinese; otherwise the nearest letter
    on either side decides, the left one first; with no letter at all, ``default``.
    """
    if _CJK.search(text, start, end):
        return "zh"
    left, right = _nearest_letter(text, start - 1, -1), _nearest_letter(text, end, 1)
    if (start > 0 and _CJK.match(text[start - 1])) or (end < len(text) and _CJK.match(text[end])):
        return "zh"
    return left or right or default


def apply_rules(text: str, rules: Iterable[Rule], accept: Callable[[str, int, int], bool]) -> str:
    """Apply each ``(pattern, replace)`` rule in turn to the matches ``accept(text, start, end)`` keeps."""
    for pattern, replace in rules:
        def sub(m: re.Match, current: str = text) -> str:
            return replace(m) if accept(current, m.start(), m.end()) else m.group(0)

        text = pattern.sub(sub, text)
    return text


def normalize_numbers(text: str, language: str | None = None) -> str:
    """Spell out numbers, dates, times, money, percentages and units in ``language`` (None: per span)."""
    from speechlm.errors import InputError

    if language is not None and language not in LANGUAGES:
        raise InputError(f"language='{language}' is not one of {', '.join(LANGUAGES)}",
                         "use language=en, language=zh or leave it unset to detect it per span", field="language")
    if not any(c.isdigit() for c in text):
        return text
    from speechlm.text import numbers_en, numbers_zh

    default = "zh" if len(_CJK.findall(text)) > len(_LATIN.findall(text)) else "en"
    for lang, module in (("zh", numbers_zh), ("en", numbers_en)):
        if language not in (None, lang):
            continue
        text = apply_rules(text, module.RULES, lambda t, s, e, lang=lang: language is not None
                           or language_at(t, s, e, default) == lang)
    return text


def normalize_text(text: str, *, numbers: bool = True, language: str | None = None) -> str:
    """NFKC, Latin accents removed, white space collapsed, ends stripped; then numbers spelled out.

    Args:
        text: any text.
        numbers: spell out numbers, dates, times, money, percentages and units (see the module doc).
        language: ``"en"`` or ``"zh"`` for every number; None detects it per span (CJK vs Latin).
    """
    text = unicodedata.normalize("NFKC", text)
    text = "".join(_strip_accents(c) if ord(c) > 127 else c for c in text)
    # NFKC turns the ideographic full stop etc. into themselves; clean_text maps those later.
    text = re.sub(r"[ \t\r\f\v]+", " ", text).strip()
    if numbers:
        text = normalize_numbers(text, language)
        text = re.sub(r"[ \t\r\f\v]+", " ", text).strip()
    return text
