"""Prompt synthesis: espeak-ng, converted to what Asterisk plays natively (8 kHz mono 16-bit WAV)."""

import wave
from pathlib import Path

from ivr.menu.loader import parse_menu_text
from ivr.prompts import PromptLibrary, build_prompts

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
    assert build_prompts(MENU, tmp_path) == 2
    for language in ("zh", "en"):
        with wave.open(str(tmp_path / language / "bye.wav")) as audio:
            assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
            assert audio.getnframes() > 8000  # more than a second of speech
    assert build_prompts(MENU, tmp_path) == 0
    assert build_prompts(MENU, tmp_path, force=True) == 2


def test_library_paths_are_what_asterisk_plays() -> None:
    assert PromptLibrary("/srv/hotline/x/prompts/").path("bye", "zh") == "/srv/hotline/x/prompts/zh/bye"
