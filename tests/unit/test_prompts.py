"""Prompt synthesis: espeak-ng, converted to what Asterisk plays natively (8 kHz mono 16-bit WAV)."""

import wave
from pathlib import Path

from ivr.menu.loader import parse_menu_text
from ivr.prompts import PromptLibrary, build_prompts, number_words

MENU = parse_menu_text("""\
name: p
languages: [zh, en]
default_language: zh
start: bye
prompts:
  bye: {zh: 感谢您的来电，再见。, en: "Thank you for calling; \\"goodbye\\" -- $(reboot)"}
nodes:
  bye: {type: hangup, prompt: bye}
""")


def test_prompts_are_8khz_mono_and_rebuilt_only_when_changed(tmp_path: Path) -> None:
    digits = len(number_words("zh"))  # Mandarin digits for SAY NUMBER; English ones come with Asterisk
    assert build_prompts(MENU, tmp_path) == 2 + digits
    assert (tmp_path / "zh" / "digits" / "20.wav").exists() and not (tmp_path / "en" / "digits").exists()
    for language in ("zh", "en"):
        with wave.open(str(tmp_path / language / "bye.wav")) as audio:
            assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
            assert audio.getnframes() > 8000  # more than a second of speech
    assert build_prompts(MENU, tmp_path) == 0
    assert build_prompts(MENU, tmp_path, force=True) == 2 + digits


def test_number_words_follow_asterisk_say_syntax() -> None:
    zh = number_words("zh")
    # say.c's Chinese syntax: 12 is digits/10 + digits/2, 35 is digits/30 + digits/5; 10000 is "wan".
    assert (zh["10"], zh["2"], zh["30"], zh["wan"]) == ("十", "二", "三十", "万")
    ko = number_words("ko")  # English syntax file names: 0..19 each, then tens
    assert (ko["11"], ko["20"], ko["hundred"]) == ("십일", "이십", "백")
    assert number_words("en") == {}


def test_library_paths_are_what_asterisk_plays() -> None:
    assert PromptLibrary("/srv/hotline/x/prompts/").path("bye", "zh") == "/srv/hotline/x/prompts/zh/bye"
