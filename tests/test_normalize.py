"""Text normalisation: NFKC + accents (unchanged), and numbers/dates/times/money/units in English and Chinese."""

from __future__ import annotations

import pytest

from speechlm.errors import InputError
from speechlm.text.clean import clean_text
from speechlm.text.normalize import language_at, normalize_text

ENGLISH = [
    ("I have 3 apples.", "I have three apples."),                                   # cardinal
    ("1,000,000 people.", "one million people."),                                   # thousands separators
    ("Pi is 3.14.", "Pi is three point one four."),                                 # decimal
    ("The 21st century.", "The twenty-first century."),                             # ordinal
    ("In 1999 we met.", "In nineteen ninety-nine we met."),                         # year
    ("Born on 2024-01-05.", "Born on January fifth, twenty twenty-four."),          # ISO date
    ("Due 12/25/2023.", "Due December twenty-fifth, twenty twenty-three."),         # US date
    ("January 5, 2024", "January fifth, twenty twenty-four"),                       # month + day
    ("Meet at 9:05 pm.", "Meet at nine oh five p m."),                              # time
    ("At 12:00.", "At twelve o'clock."),                                            # full hour
    ("It costs $12.50 today.", "It costs twelve dollars and fifty cents today."),   # dollars + cents
    ("Pay €5 or £1.", "Pay five euros or one pound."),                              # euro, pound
    ("It is ¥100.", "It is one hundred yen."),                                      # yen
    ("Price $1.5 million.", "Price one point five million dollars."),               # scale word
    ("Up 50% or 12.5%.", "Up fifty percent or twelve point five percent."),         # percentages
    ("Run 5 km, lift 1 kg.", "Run five kilometers, lift one kilogram."),            # units, singular
    ("It is -3 °C.", "It is minus three degrees Celsius."),                         # temperature, negative
    ("Call 555-123-4567.", "Call five five five, one two three, four five six seven."),  # phone-like
    ("It was -7 degrees.", "It was minus seven degrees."),                          # negative
    ("Agent 007.", "Agent zero zero seven."),                                       # leading zero: digits
]
CHINESE = [
    ("我有3个苹果", "我有三个苹果"),                      # cardinal
    ("共有10086人", "共有一万零八十六人"),                # cardinal with zero
    ("20000元", "两万元"),                              # 两 before 万
    ("长3.5米", "长三点五米"),                           # decimal
    ("0.05秒", "零点零五秒"),                            # decimal below one
    ("第3名", "第三名"),                                 # ordinal
    ("2024年1月5日", "二零二四年一月五日"),              # date, year digit by digit
    ("2024-01-05出发", "二零二四年一月五日出发"),        # ISO date
    ("下午3:30开会", "下午三点三十分开会"),              # time
    ("8:05起床", "八点零五分起床"),                      # time with a leading zero minute
    ("价格是12.5元", "价格是十二点五元"),                # 元
    ("他花了¥100", "他花了一百元"),                      # ¥
    ("价格是$5", "价格是五美元"),                        # $
    ("票价€20", "票价二十欧元"),                         # €
    ("增长了50%", "增长了百分之五十"),                   # percentage
    ("气温-3℃", "气温零下三摄氏度"),                     # temperature (℃ → °C by NFKC)
    ("跑了5km，重20kg", "跑了五公里,重二十公斤"),         # units (NFKC: full-width comma → ",")
    ("电话13812345678", "电话一三八一二三四五六七八"),    # mobile number
    ("拨打010-12345678", "拨打零一零一二三四五六七八"),  # phone with area code
    ("下降了-5", "下降了负五"),                          # negative
    ("三分之一是1/3", "三分之一是三分之一"),             # fraction
]
MIXED = [
    ("我有3个apples and 5 oranges", "我有三个apples and five oranges"),
    ("Version 2 发布于2024年", "Version two 发布于二零二四年"),
    ("他说 I paid $5 给我", "他说 I paid five dollars 给我"),
]


@pytest.mark.parametrize("text,expected", ENGLISH)
def test_english(text, expected):
    assert normalize_text(text) == expected
    assert normalize_text(text, language="en") == expected


@pytest.mark.parametrize("text,expected", CHINESE)
def test_chinese(text, expected):
    assert normalize_text(text) == expected
    assert normalize_text(text, language="zh") == expected


@pytest.mark.parametrize("text,expected", MIXED)
def test_mixed_spans(text, expected):
    assert normalize_text(text) == expected


def test_language_can_be_forced():
    assert normalize_text("3", language="zh") == "三"
    assert normalize_text("3") == "three"  # no letters at all: English
    assert normalize_text("3个", language="en") == "three个"
    with pytest.raises(InputError, match="language"):
        normalize_text("3", language="fr")


def test_language_at():
    assert language_at("重5kg的", 1, 4) == "zh"
    assert language_at("about 5 km", 6, 7) == "en"
    assert language_at("5", 0, 1, default="zh") == "zh"


def test_unicode_folding_kept():
    # the previous behaviour: NFKC, accents folded, white space collapsed; digits only with numbers=False
    assert normalize_text("  café\t ＡＢＣ１２３  ", numbers=False) == "cafe ABC123"
    assert normalize_text("Ｉ ｈａｖｅ ２ ｃａｔｓ") == "I have two cats"
    assert normalize_text("naïve résumé", numbers=False) == normalize_text("naïve résumé") == "naive resume"
    assert normalize_text("中文。日本語です") == "中文。日本語です"


def test_output_survives_clean_text():
    # what the model sees: the original's cleaning keeps every spelled-out character
    for text, expected in ENGLISH + CHINESE:
        assert clean_text(expected) == clean_text(normalize_text(text))
        assert not any(c.isdigit() for c in normalize_text(text)), text


def test_huge_and_odd_numbers_do_not_fail():
    assert normalize_text("1" * 30) == " ".join(["one"] * 30)
    assert normalize_text("编号" + "1" * 20) == "编号" + "一" * 20
    # not a time, not a date: read as plain numbers
    assert normalize_text("99:99 and 2024-13-45") == ("ninety-nine:ninety-nine and two zero two four, one three, "
                                                      "four five")
    assert normalize_text("在99:99") == "在九十九:九十九"
