"""Offline speech recognition with Vosk: one model per language per process, recognizers per call.

Recognition is CPU work in a C library, so it runs in a thread pool of bounded size (the event
loop never waits on it) with a deadline; a circuit breaker stops trying for a while after repeated
failures, so a broken or overloaded recognizer costs callers nothing but the DTMF menu. Models are
loaded once, in the background at start; until a language's model is loaded, that language
counts as unavailable (callers get DTMF rather than silence while it loads).

Audio: Asterisk records 8 kHz 16-bit mono WAV. Vosk resamples to the model's rate itself when the
recognizer is created with the audio's rate (measured in bench/ against converting with pydub).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import wave
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHUNK_FRAMES = 4000  # half a second of 8 kHz audio per AcceptWaveform


class SpeechUnavailable(Exception):
    """No recognition now (no model, model broken, breaker open, too slow): use DTMF."""


@dataclass(frozen=True)
class Word:
    word: str
    confidence: float
    start: float
    end: float


@dataclass(frozen=True)
class Recognition:
    text: str
    words: tuple[Word, ...]
    seconds: float  # how long recognition took (not the audio's length)

    @property
    def confidence(self) -> float:
        """The weakest word's: with a grammar, noise or other speech is forced onto some phrase, and
        one unsure word gives it away where an average would not (measured with the Korean model)."""
        return min((w.confidence for w in self.words), default=0.0)


class CircuitBreaker:
    """Open after ``failures`` failures in a row; closed again ``cool_off`` seconds later."""

    def __init__(self, failures: int = 3, cool_off: float = 60.0) -> None:
        self._limit = failures
        self._cool_off = cool_off
        self._failures = 0
        self._open_until = 0.0

    @property
    def open(self) -> bool:
        return time.monotonic() < self._open_until

    def succeeded(self) -> None:
        self._failures = 0

    def failed(self) -> None:
        self._failures += 1
        if self._failures >= self._limit:
            self._open_until = time.monotonic() + self._cool_off
            self._failures = 0
            log.warning("speech recognition failing: DTMF only for %.0f s", self._cool_off)


def recognize_file(model: Any, audio: Path, phrases: list[str] | None) -> Recognition:
    """Blocking: recognize one WAV file (run in the engine's thread pool)."""
    from vosk import KaldiRecognizer

    started = time.perf_counter()
    with wave.open(str(audio), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ValueError(f"{audio.name}: expected 16-bit mono audio")
        recognizer = (
            KaldiRecognizer(model, wav.getframerate(), json.dumps(phrases, ensure_ascii=False))
            if phrases
            else KaldiRecognizer(model, wav.getframerate())
        )
        recognizer.SetWords(True)
        while chunk := wav.readframes(CHUNK_FRAMES):
            recognizer.AcceptWaveform(chunk)
    result = json.loads(recognizer.FinalResult())
    words = tuple(
        Word(str(w.get("word", "")), float(w.get("conf", 0.0)), float(w.get("start", 0.0)), float(w.get("end", 0.0)))
        for w in result.get("result", [])
    )
    return Recognition(str(result.get("text", "")).strip(), words, time.perf_counter() - started)


class SpeechEngine:
    def __init__(
        self,
        models: Mapping[str, Path],
        *,
        workers: int = 2,
        deadline: float = 3.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.models = dict(models)
        self.deadline = deadline
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="speech")
        self._loaded: dict[str, Any] = {}
        self._broken: dict[str, str] = {}  # language -> why its model cannot be used
        self._loading: dict[str, asyncio.Task[None]] = {}
        self.breaker = breaker or CircuitBreaker()

    def available(self, language: str) -> bool:
        return language in self._loaded and not self.breaker.open

    def status(self) -> dict[str, str]:
        return {
            lang: "loaded" if lang in self._loaded else self._broken.get(lang, "loading")
            for lang in self.models
        }

    async def load(self, language: str) -> None:
        """Load a language's model once (in a thread: it takes seconds). Failures are remembered."""
        if language in self._loaded or language in self._broken or language not in self.models:
            return
        task = self._loading.get(language)
        if task is None:
            task = self._loading[language] = asyncio.create_task(self._load(language), name=f"speech-{language}")
        await asyncio.shield(task)

    async def _load(self, language: str) -> None:
        path = self.models[language]
        if not (path / "am").is_dir() and not (path / "conf").is_dir():
            self._broken[language] = f"no model at {path}"
            log.warning("speech model for %s missing (%s): DTMF only", language, path)
            return
        try:
            from vosk import Model, SetLogLevel

            SetLogLevel(-1)
            started = time.monotonic()
            model = await asyncio.get_running_loop().run_in_executor(self._pool, Model, str(path))
        except Exception as exc:  # a broken model must degrade to DTMF, whatever Vosk raises
            self._broken[language] = f"model failed to load: {exc}"
            log.error("speech model for %s failed to load from %s: %s", language, path, exc)
            return
        self._loaded[language] = model
        log.info("speech model for %s loaded in %.1f s", language, time.monotonic() - started)

    async def preload(self) -> None:
        """Background task (owned by the app): load every configured model."""
        for language in self.models:
            await self.load(language)

    async def recognize(self, audio: Path, language: str, phrases: list[str] | None) -> Recognition:
        model = self._loaded.get(language)
        if model is None or self.breaker.open:
            raise SpeechUnavailable(self._broken.get(language, "breaker open" if model else "model not loaded"))
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.deadline):
                result = await loop.run_in_executor(self._pool, recognize_file, model, audio, phrases)
        except TimeoutError:
            self.breaker.failed()
            raise SpeechUnavailable(f"recognition slower than {self.deadline} s") from None
        except (OSError, ValueError, EOFError, wave.Error) as exc:
            raise SpeechUnavailable(f"unreadable recording: {exc}") from exc
        except Exception as exc:  # Vosk raised: count it, use DTMF for this call
            self.breaker.failed()
            raise SpeechUnavailable(f"recognition failed: {exc}") from exc
        self.breaker.succeeded()
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
