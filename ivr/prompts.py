"""Prompt audio: synthesized from the menu's texts with espeak-ng, converted for Asterisk with pydub.

Asterisk plays 8 kHz mono 16-bit WAV natively (format_wav), so every prompt is stored as
``<dir>/<language>/<prompt_id>.wav`` in that format and played by its path without extension.
A sidecar ``.txt`` keeps the text a file was made from, so a rebuild only redoes changed prompts.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ivr.menu.schema import Menu

log = logging.getLogger(__name__)

# espeak-ng voice per menu language.
VOICES = {"zh": "cmn", "en": "en-us", "ko": "ko", "yue": "yue"}
ASTERISK_RATE = 8000


class PromptBuildError(Exception):
    pass


@dataclass(frozen=True)
class PromptLibrary:
    """Where Asterisk finds a prompt (its own view of the folder, e.g. inside a chroot)."""

    asterisk_dir: str

    def path(self, prompt_id: str, language: str) -> str:
        return f"{self.asterisk_dir.rstrip('/')}/{language}/{prompt_id}"


def synthesize(text: str, language: str, target: Path) -> None:
    """Speak ``text`` with espeak-ng and store it as 8 kHz mono 16-bit WAV."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise PromptBuildError("espeak-ng is not installed (apt-get install espeak-ng)")
    voice = VOICES.get(language, language)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        # The text goes as one argv element (no shell); "--" stops option parsing.
        result = subprocess.run(
            [espeak, "-v", voice, "-s", "150", "-w", str(raw), "--", text],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0 or not raw.exists():
            raise PromptBuildError(f"espeak-ng failed for {language}: {result.stderr.decode(errors='replace')}")
        with warnings.catch_warnings():
            # pydub warns at import that ffmpeg is missing; WAV in and out needs no ffmpeg.
            warnings.simplefilter("ignore", RuntimeWarning)
            from pydub import AudioSegment
        audio = AudioSegment.from_wav(raw).set_channels(1).set_frame_rate(ASTERISK_RATE).set_sample_width(2)
        partial = target.with_suffix(".part")
        audio.export(partial, format="wav")
        partial.replace(target)


_ZH_DIGITS = "零一二三四五六七八九"
_KO_DIGITS = ["영", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"]


def number_words(language: str) -> dict[str, str]:
    """The ``digits/*`` files Asterisk's SAY NUMBER plays, for languages whose sounds Asterisk
    does not ship (English comes with Asterisk). File names follow say.c: the Chinese syntax
    says 10..90 and hundred/thousand/wan/yi; other languages use the English syntax (0..19, tens,
    hundred, thousand, million)."""
    if language == "zh":
        words = {str(n): _ZH_DIGITS[n] for n in range(10)}
        words |= {str(t * 10): ("" if t == 1 else _ZH_DIGITS[t]) + "十" for t in range(1, 10)}
        return words | {"hundred": "百", "thousand": "千", "wan": "万", "yi": "亿", "minus": "负"}
    if language == "ko":
        words = {str(n): _KO_DIGITS[n] for n in range(10)}
        words |= {str(10 + n): "십" + _KO_DIGITS[n] for n in range(1, 10)} | {"10": "십"}
        words |= {str(t * 10): _KO_DIGITS[t] + "십" for t in range(2, 10)}
        return words | {"hundred": "백", "thousand": "천", "million": "백만", "minus": "마이너스"}
    return {}


def _jobs(menu: Menu, out_dir: Path, force: bool) -> Iterable[tuple[str, str, Path]]:
    files = [(f"digits/{name}", lang, text) for lang in menu.languages for name, text in number_words(lang).items()]
    files += [(pid, lang, texts[lang]) for pid, texts in menu.prompts.items() for lang in menu.languages]
    for name, language, text in files:
        target = out_dir / language / f"{name}.wav"
        sidecar = target.with_suffix(".txt")
        if not force and target.exists() and sidecar.exists() and sidecar.read_text("utf-8") == text:
            continue
        yield text, language, target


def build_prompts(menu: Menu, out_dir: Path, *, force: bool = False, workers: int = 2) -> int:
    """Build every prompt of ``menu`` in every language; returns how many files were made."""
    jobs = list(_jobs(menu, out_dir, force))

    def one(job: tuple[str, str, Path]) -> None:
        text, language, target = job
        synthesize(text, language, target)
        target.with_suffix(".txt").write_text(text, "utf-8")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, jobs))
    if jobs:
        log.info("built %d prompt file(s) in %s", len(jobs), out_dir)
    return len(jobs)
