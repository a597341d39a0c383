"""Chinese spoken forms of numbers, dates, times, money, percentages and units (numerals from ``cn2an``).

The v1.1.2 web UI normalised Chinese text with a vendored copy of the unmaintained chn-text-norm; here
``cn2an`` reads the numbers and these rules place them: years digit by digit ("2024年" → "二零二四年"),
"12:30" → "十二点三十分", "50%" → "百分之五十", "-3°C" → "零下三摄氏度", "¥100" → "一百元",
"1/3" → "三分之一", phone numbers digit by digit.
"""

from __future__ import annotations

import re

import cn2an

NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
DIGITS = "零一二三四五六七八九"
CURRENCIES = {"¥": "元", "$": "美元", "€": "欧元", "£": "英镑", "₩": "韩元", "₹": "卢比"}
UNITS = {"km/h": "公里每小时", "°C": "摄氏度", "°F": "华氏度", "km": "公里", "cm": "厘米", "mm": "毫米",
         "m": "米", "kg": "公斤", "mg": "毫克", "g": "克", "ml": "毫升", "mL": "毫升", "L": "升",
         "GB": "G B", "MB": "M B", "Hz": "赫兹", "kW": "千瓦", "°": "度", "度": "度"}
_UNIT_RE = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))


def digits(text: str) -> str:
    """Read each digit: "0451" → "零四五一"."""
    return "".join(DIGITS[int(d)] for d in text if d.isdigit())


def cardinal(text: str) -> str:
    """ "1,234.5" → "一千二百三十四点五"; a leading 二 before 千/万/亿 is read 两, as spoken."""
    value = text.replace(",", "").replace("−", "-")
    whole = value.lstrip("-").split(".")[0]
    if len(whole) > 16:  # beyond cn2an's range: no one reads such a number as a quantity
        return ("负" if value.startswith("-") else "") + digits(value)
    words = cn2an.an2cn(value, "low")
    return re.sub(r"(^|负)二(?=[千万亿])", r"\1两", words)


def _date(m: re.Match) -> str:
    y, mo, d = m.group("y"), m.group("mo"), m.group("d")
    out = f"{digits(y)}年" if y else ""
    out += f"{cardinal(mo)}月" if mo else ""
    return out + (f"{cardinal(d)}{m.group('suffix') or '日'}" if d else "")


def _iso_date(m: re.Match) -> str:
    y, mo, d = m.groups()
    if not (1 <= int(mo) <= 12 and 1 <= int(d) <= 31):
        return m.group(0)
    return f"{digits(y)}年{cardinal(mo)}月{cardinal(d)}日"


def _time(m: re.Match) -> str:
    h, mi, s = m.group(1), int(m.group(2)), m.group(3)
    if int(h) > 24 or mi > 59 or (s and int(s) > 59):
        return m.group(0)
    words = f"{cardinal(h)}点"
    if mi == 0 and not s:
        return words + "整"
    words += ("零" if mi < 10 else "") + f"{cardinal(str(mi))}分"
    return words + (f"{cardinal(s)}秒" if s else "")


def _money(m: re.Match) -> str:
    sign = "负" if m.group(1) else ""
    return f"{sign}{cardinal(m.group(3))}{CURRENCIES[m.group(2)]}"


def _signed(value: str, negative_word: str = "负") -> str:
    negative = value.startswith(("-", "−"))
    return (negative_word if negative else "") + cardinal(value.lstrip("-−"))


def _unit(m: re.Match) -> str:
    value, unit = m.group(1), m.group(2)
    # temperatures below zero are read 零下 ("minus" is 负 for every other quantity)
    return _signed(value, "零下" if unit in ("°C", "°F", "°", "度") else "负") + UNITS[unit]


def _number(m: re.Match) -> str:
    text = m.group(0)
    plain = text.lstrip("-−")
    if plain.isdigit() and len(plain) > 1 and plain.startswith("0"):
        return digits(plain)
    return _signed(text)


RULES = [
    (re.compile(r"(?:(?P<y>\d{2,4})年)?(?:(?P<mo>\d{1,2})月)?(?:(?P<d>\d{1,2})(?P<suffix>[日号]))?"
                r"(?<=[年月日号])"), _date),
    (re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)"), _iso_date),
    (re.compile(r"(?<!\d)(\d{1,2})[:：](\d{2})(?:[:：](\d{2}))?(?!\d)"), _time),
    (re.compile(rf"([-−])?([¥$€£₩₹])\s?({NUM})"), _money),
    # phone-like: mobile numbers, a +country code, or groups of digits joined by - or spaces
    (re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)|\+\d[\d\- ]{5,}\d|(?<!\d)0\d{2,3}-\d{7,8}(?!\d)|(?<!\d)\d{3,4}(?:-\d{3,4}){1,2}(?!\d)"),
     lambda m: digits(m.group(0))),
    (re.compile(rf"((?<![\d.])[-−]?{NUM})\s?[%％]"), lambda m: "百分之" + _signed(m.group(1))),
    (re.compile(rf"((?<![\d.])[-−]?{NUM})\s?({_UNIT_RE})(?![A-Za-z])"), _unit),
    (re.compile(r"(?<![\d.])(\d+)/(\d+)(?![\d.])"), lambda m: f"{cardinal(m.group(2))}分之{cardinal(m.group(1))}"),
    (re.compile(rf"(?<![\d.A-Za-z])[-−](?=\d){NUM}|{NUM}"), _number),
]
