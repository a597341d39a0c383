"""English spoken forms of numbers, dates, times, money, percentages and units (words from ``num2words``).

Each rule is ``(pattern, replacement function)``; :func:`speechlm.text.normalize.apply_rules` applies
them in order, so the specific forms (money, dates, times, phone numbers) are read before the plain
numbers they contain. Four-digit numbers 1100–2099 without separators are read as years, as most
TTS front ends do ("in 1999" → "nineteen ninety-nine").
"""

from __future__ import annotations

import re

from num2words import num2words

NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
MONTHS = ("January February March April May June July August September October November December").split()
# symbol → (singular, plural, cent singular, cent plural); None: no minor unit read
CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
              "£": ("pound", "pounds", "penny", "pence"), "¥": ("yen", "yen", None, None),
              "₩": ("won", "won", None, None), "₹": ("rupee", "rupees", "paisa", "paise")}
SCALES = {"k": "thousand", "thousand": "thousand", "m": "million", "million": "million", "mn": "million",
          "b": "billion", "bn": "billion", "billion": "billion", "trillion": "trillion"}
# unit → (singular, plural); longest first in the pattern so "km/h" wins over "km"
UNITS = {"km/h": ("kilometer per hour", "kilometers per hour"), "mph": ("mile per hour", "miles per hour"),
         "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
         "km": ("kilometer", "kilometers"), "cm": ("centimeter", "centimeters"),
         "mm": ("millimeter", "millimeters"), "m": ("meter", "meters"), "kg": ("kilogram", "kilograms"),
         "mg": ("milligram", "milligrams"), "g": ("gram", "grams"), "lb": ("pound", "pounds"),
         "lbs": ("pound", "pounds"), "mi": ("mile", "miles"), "ft": ("foot", "feet"),
         "ml": ("milliliter", "milliliters"), "mL": ("milliliter", "milliliters"), "L": ("liter", "liters"),
         "GB": ("gigabyte", "gigabytes"), "MB": ("megabyte", "megabytes"), "TB": ("terabyte", "terabytes"),
         "kHz": ("kilohertz", "kilohertz"), "Hz": ("hertz", "hertz"), "kW": ("kilowatt", "kilowatts"),
         "°": ("degree", "degrees")}
_UNIT_RE = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))


def cardinal(text: str) -> str:
    """ "1,234.5" → "one thousand, two hundred and thirty-four point five" (commas dropped from words)."""
    value = text.replace(",", "")
    negative = value.startswith(("-", "−"))
    value = value.lstrip("-−")
    if "." in value:
        whole, frac = value.split(".", 1)
        words = f"{num2words(int(whole or 0))} point {' '.join(num2words(int(d)) for d in frac)}"
    else:
        words = num2words(int(value))
    return ("minus " if negative else "") + words.replace(",", "")


def digits(text: str) -> str:
    """Read each digit: "0451" → "zero four five one"."""
    return " ".join(num2words(int(d)) for d in text if d.isdigit())


def year(value: int) -> str:
    return num2words(value, to="year")


def _plural(value: str, one: str, many: str) -> str:
    return one if value.replace(",", "").lstrip("-−") in ("1", "1.0") else many


def _money(m: re.Match) -> str:
    sign, symbol, amount, scale = m.group("sign"), m.group("cur"), m.group("amount"), m.group("scale")
    one, many, cent, cents = CURRENCIES[symbol]
    prefix = "minus " if sign else ""
    if scale:
        return f"{prefix}{cardinal(amount)} {SCALES[scale.lower()]} {many}"
    whole, _, frac = amount.replace(",", "").partition(".")
    words = f"{prefix}{cardinal(whole)} {_plural(whole, one, many)}"
    if frac and cent and int(frac[:2].ljust(2, "0")):
        c = str(int(frac[:2].ljust(2, "0")))
        words += f" and {cardinal(c)} {_plural(c, cent, cents)}"
    elif frac and not cent:
        words = f"{prefix}{cardinal(amount)} {many}"
    return words


def _time(m: re.Match) -> str:
    h, mi, s, ampm = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
    if h > 24 or mi > 59 or (s and int(s) > 59):
        return m.group(0)
    words = num2words(h)
    if mi == 0 and not s:
        words += "" if ampm else " o'clock"
    else:
        words += f" oh {num2words(mi)}" if mi < 10 else f" {num2words(mi)}"
    if s:
        words += f" and {cardinal(s)} {_plural(s, 'second', 'seconds')}"
    if ampm:
        words += " " + " ".join(ampm.replace(".", "").lower())
    return words


def _date(y: str, mo: str, d: str) -> str | None:
    if not (1 <= int(mo) <= 12 and 1 <= int(d) <= 31):
        return None
    return f"{MONTHS[int(mo) - 1]} {num2words(int(d), to='ordinal')}, {year(int(y))}"


def _iso_date(m: re.Match) -> str:
    return _date(m.group(1), m.group(2), m.group(3)) or m.group(0)


def _us_date(m: re.Match) -> str:
    return _date(m.group(3), m.group(1), m.group(2)) or m.group(0)


def _month_day(m: re.Match) -> str:
    return f"{m.group(1)} {num2words(int(m.group(2)), to='ordinal')}"


def _unit(m: re.Match) -> str:
    value, unit = m.group(1), m.group(2)
    one, many = UNITS[unit]
    return f"{cardinal(value)} {_plural(value, one, many)}"


def _number(m: re.Match) -> str:
    text = m.group(0)
    plain = text.lstrip("-−")
    if plain.isdigit() and len(plain) == 4 and 1100 <= int(plain) <= 2099 and plain == text:
        return year(int(plain))
    if plain.isdigit() and ((len(plain) > 1 and plain.startswith("0")) or len(plain) > 15):
        return digits(plain)
    return cardinal(text)


RULES = [
    (re.compile(rf"(?P<sign>[-−])?(?P<cur>[$€£¥₩₹])\s?(?P<amount>{NUM})"
                rf"(?:\s?(?P<scale>k|m|mn|bn|b|thousand|million|billion|trillion)\b)?", re.I), _money),
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"), _iso_date),
    (re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b"), _us_date),
    (re.compile(rf"\b({'|'.join(MONTHS)})\s+(\d{{1,2}})(?:st|nd|rd|th)?\b"), _month_day),
    (re.compile(r"\b(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s?([ap]\.m\.|[ap]m)(?!\w))?", re.I), _time),
    # phone-like: +country code, or three or more groups of digits joined by - or spaces/dots
    (re.compile(r"(?<![\w.])\+\d[\d\- ]{5,}\d\b|\b\d{2,4}(?:[-.]\d{2,4}){2,}\b"),
     lambda m: ", ".join(digits(g) for g in re.split(r"[-. ]+", m.group(0).lstrip("+")) if g)),
    (re.compile(rf"((?<![\w.])[-−]?{NUM})\s?%"), lambda m: f"{cardinal(m.group(1))} percent"),
    (re.compile(rf"((?<![\w.])[-−]?{NUM})\s?({_UNIT_RE})(?![A-Za-z])"), _unit),
    (re.compile(r"\b(\d+)(?:st|nd|rd|th)\b", re.I), lambda m: num2words(int(m.group(1)), to="ordinal")),
    (re.compile(r"\b(\d+)/(\d+)\b"), lambda m: f"{cardinal(m.group(1))} over {cardinal(m.group(2))}"),
    (re.compile(rf"(?<![\w.])[-−](?=\d){NUM}|\b{NUM}"), _number),
]
