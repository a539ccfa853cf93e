"""Digits said one by one (an account, a phone number), per language: the recognition grammar's
words and their digits. Phone numbers are read digit by digit in every language here; Mandarin
callers say 幺 for 1 and 两 for 2 in numbers, English ones "oh" for 0."""

from __future__ import annotations

DIGIT_WORDS: dict[str, dict[str, str]] = {
    "ko": {"영": "0", "공": "0", "일": "1", "이": "2", "삼": "3", "사": "4", "오": "5", "육": "6", "칠": "7",
           "팔": "8", "구": "9"},
    "zh": {"零": "0", "洞": "0", "一": "1", "幺": "1", "二": "2", "两": "2", "三": "3", "四": "4", "五": "5",
           "六": "6", "七": "7", "八": "8", "九": "9"},
    "en": {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
           "seven": "7", "eight": "8", "nine": "9"},
}


def digit_words(language: str) -> list[str]:
    return list(DIGIT_WORDS.get(language, {}))


def words_to_digits(text: str, language: str) -> str | None:
    """The digits of a recognised text, or None if any word is not a digit (then it is no match)."""
    table = DIGIT_WORDS.get(language, {})
    words = text.split()
    if not words or any(word not in table for word in words):
        return None
    return "".join(table[word] for word in words)
