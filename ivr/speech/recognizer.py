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
            # After the cool-off one trial: its failure opens the breaker again at once.
            self._failures = self._limit - 1
            log.warning("speech recognition failing: DTMF only for %.0f s", self._cool_off)


SLN_RATE = 8000  # Asterisk's "sln": headerless signed 16-bit mono at 8 kHz


def recognize_file(model: Any, audio: Path, phrases: list[str] | None) -> Recognition:
    """Blocking: recognize one recording (run in the engine's thread pool). ``.sln`` is raw
    8 kHz audio as Asterisk records it; anything else is read as WAV."""
    from vosk import KaldiRecognizer

    started = time.perf_counter()
    if audio.suffix == ".sln":
        rate, pcm = SLN_RATE, audio.read_bytes()
    else:
        with wave.open(str(audio), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise ValueError(f"{audio.name}: expected 16-bit mono audio")
            rate, pcm = wav.getframerate(), wav.readframes(wav.getnframes())
    recognizer = (
        KaldiRecognizer(model, rate, json.dumps(phrases, ensure_ascii=False)) if phrases
        else KaldiRecognizer(model, rate)
    )
    recognizer.SetWords(True)
    step = CHUNK_FRAMES * 2
    for offset in range(0, len(pcm), step):
        recognizer.AcceptWaveform(pcm[offset:offset + step])
    result = json.loads(recognizer.FinalResult())
    words = tuple(
        Word(str(w.get("word", "")), float(w.get("conf", 0.0)), float(w.get("start", 0.0)), float(w.get("end", 0.0)))
        for w in result.get("result", [])
    )
    return Recognition(str(result.get("text", "")).strip(), words, time.perf_counter() - started)


def _load_model(path: str) -> Any:
    from vosk import Model, SetLogLevel  # the library itself loads here too: off the event loop

    SetLogLevel(-1)
    return Model(path)


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
        self._workers = workers
        self._running = 0  # recognitions in the pool now (a timed-out one runs on to its end)
        self._breakers: dict[str, CircuitBreaker] = {}  # one per language: one bad model spares the rest
        self._breaker_template = breaker

    def breaker(self, language: str) -> CircuitBreaker:
        if language not in self._breakers:
            self._breakers[language] = self._breaker_template or CircuitBreaker()
        return self._breakers[language]

    @property
    def breakers_open(self) -> list[str]:
        return [lang for lang, b in self._breakers.items() if b.open]

    def available(self, language: str) -> bool:
        return language in self._loaded and not self.breaker(language).open

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
            started = time.monotonic()
            model = await asyncio.get_running_loop().run_in_executor(self._pool, _load_model, str(path))
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
        breaker = self.breaker(language)
        if model is None or breaker.open:
            raise SpeechUnavailable(self._broken.get(language, "breaker open" if model else "model not loaded"))
        if self._running >= self._workers:
            # Every worker busy: waiting in line would eat the deadline; DTMF now, not counted as a failure.
            raise SpeechUnavailable("all recognizers busy")
        loop = asyncio.get_running_loop()
        self._running += 1
        job = loop.run_in_executor(self._pool, recognize_file, model, audio, phrases)

        def finished(_: object) -> None:
            self._running -= 1

        job.add_done_callback(finished)
        try:
            async with asyncio.timeout(self.deadline):
                result = await asyncio.shield(job)  # a timeout leaves the running job to finish
        except TimeoutError:
            breaker.failed()
            raise SpeechUnavailable(f"recognition slower than {self.deadline} s") from None
        except (OSError, ValueError, EOFError, wave.Error) as exc:
            raise SpeechUnavailable(f"unreadable recording: {exc}") from exc
        except Exception as exc:  # Vosk raised: count it, use DTMF for this call
            breaker.failed()
            raise SpeechUnavailable(f"recognition failed: {exc}") from exc
        breaker.succeeded()
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
