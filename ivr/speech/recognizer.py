"""Offline speech recognition with Vosk: one model per language per process, recognizers per call.

Recognition is CPU work in a C library, so it runs in a thread pool of bounded size (the event
loop never waits on it) with a deadline; a circuit breaker stops trying for a while after repeated
failures, so a broken or overloaded recognizer costs callers nothing but the DTMF menu. Models are
loaded once, in the background at start; until a language's model is loaded, that language
counts as unavailable (callers get DTMF rather than silence while it loads).

Audio: Asterisk records headerless 8 kHz 16-bit mono ("sln"), and the recognizer decodes it as
it is written (:class:`Utterance`): the caller's answer is recognised while they speak, and the
result is ready tens of ms after the recording ends (bench/speech.py measures it, callers
answering at once on one core). Vosk resamples to the model's rate itself when the recognizer is
created with the audio's rate (measured in bench/ against converting with pydub).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
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
    seconds: float  # from the end of the recording to the result (not the audio's length)

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
# How often a recording being written is read on. Each piece is decoded with cold caches: at 0.1 s
# following cost about 1.25x the CPU of decoding the answer at once, at 0.25-0.3 s about 1.1x, for
# some 10 ms more after the recording (the unread rest is larger).
FOLLOW_SECONDS = 0.25
SETTLE_SECONDS = 0.02  # a recording that has not grown for this long after its command ended is complete
SETTLE_CHECKS = 8


URGENT, BACKGROUND = 0, 1  # a job's priority in the pool


class PriorityPool:
    """Worker threads that take the most urgent job first. A result a caller is waiting for (the
    end of their answer, the final result) goes before decoding the audio of callers still
    speaking, which may lag a little with no one waiting on it; in a FIFO pool (concurrent.futures
    has no priorities, hence this class) a finished answer waits behind every caller's next piece."""

    def __init__(self, workers: int, name: str) -> None:
        self._jobs: queue.PriorityQueue[tuple[int, int, concurrent.futures.Future[Any] | None, Any, tuple[Any, ...]]]
        self._jobs = queue.PriorityQueue()
        self._order = itertools.count()  # first come, first served within a priority
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True)
                         for n in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: int, work: Any, *args: Any) -> concurrent.futures.Future[Any]:
        """Run ``work(*args)`` in a worker (asyncio.wrap_future to await it). Its ``cancel()``
        succeeds only while the job waits, so a cancelled job has done nothing."""
        if self._closed:
            raise RuntimeError("the speech pool is shut down")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((priority, next(self._order), future, work, args))
        return future

    @property
    def closed(self) -> bool:
        return self._closed

    def _work(self) -> None:
        while True:
            _, _, future, work, args = self._jobs.get()
            if future is None:  # shut down
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = work(*args)
            except BaseException as exc:  # handed to the waiting coroutine, as an executor does
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self) -> None:
        """Cancel the jobs not started; the workers end after the ones running. Daemon threads,
        not joined: the event loop does not wait for a decode at stop."""
        self._closed = True
        while True:
            try:
                _, _, future, _, _ = self._jobs.get_nowait()
            except queue.Empty:
                break
            if future is not None:
                future.cancel()
        for _ in self._threads:
            self._jobs.put((URGENT - 1, next(self._order), None, None, ()))


def new_recognizer(model: Any, rate: int, phrases: list[str] | None) -> Any:
    """Blocking: a recognizer for one answer, with the phrases as its grammar (or free form)."""
    from vosk import KaldiRecognizer

    recognizer = (
        KaldiRecognizer(model, rate, json.dumps(phrases, ensure_ascii=False)) if phrases
        else KaldiRecognizer(model, rate)
    )
    recognizer.SetWords(True)
    return recognizer


def accept(recognizer: Any, pcm: bytes) -> None:
    """Blocking: decode audio. AcceptWaveform's True (an endpoint: the caller paused) is not acted
    on: the answer stays one utterance, and FinalResult gives all of it."""
    step = CHUNK_FRAMES * 2
    for offset in range(0, len(pcm), step):
        recognizer.AcceptWaveform(pcm[offset:offset + step])


def final_result(recognizer: Any, started: float) -> Recognition:
    """Blocking: the recognizer's result for everything it was given."""
    result = json.loads(recognizer.FinalResult())
    words = tuple(
        Word(str(w.get("word", "")), float(w.get("conf", 0.0)), float(w.get("start", 0.0)), float(w.get("end", 0.0)))
        for w in result.get("result", [])
    )
    return Recognition(str(result.get("text", "")).strip(), words, time.perf_counter() - started)


def _feed_from(recognizer: Any, audio: Path, offset: int) -> tuple[int, bool]:
    """Blocking: decode what the recording holds past ``offset`` (whole samples only); returns the
    new offset and whether the file exists. Raw 8 kHz ``.sln``, as Asterisk records for us."""
    try:
        with audio.open("rb") as file:
            file.seek(offset)
            pcm = file.read()
    except FileNotFoundError:
        return offset, False
    usable = len(pcm) - len(pcm) % 2
    if usable:
        accept(recognizer, pcm[:usable] if usable < len(pcm) else pcm)
    return offset + usable, True


def file_size(path: Path) -> int | None:
    """Blocking: the file's size, None if it is not there (yet)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


class Utterance:
    """One answer recognised while Asterisk records it: the file is read on every FOLLOW_SECONDS
    and decoded as it grows, so that when the recording ends, only its last moments and the final
    result are left to compute (tens of ms), not the whole answer. Made by
    :meth:`SpeechEngine.follow`; :meth:`finish` once the recording command has ended; :meth:`close`
    always (it gives back the engine's slot).

    A Kaldi recognizer is not thread-safe: its jobs run in the engine's pool one after another
    (each is awaited before the next is submitted)."""

    def __init__(self, engine: SpeechEngine, language: str, model: Any, audio: Path,
                 phrases: list[str] | None) -> None:
        self.audio = audio
        self.fed = 0  # bytes of audio decoded so far
        self.fed_while_recording = 0  # of which before the recording ended (what following saved)
        self.found = False  # the recording exists (Asterisk wrote it)
        self._engine = engine
        self._breaker = engine.breaker(language)
        self._loop = asyncio.get_running_loop()
        self._recognizer = asyncio.wrap_future(engine._pool.submit(URGENT, new_recognizer, model, SLN_RATE, phrases))
        self._queued: concurrent.futures.Future[Any] | None = None  # the follower's job in the pool
        self._ended = False
        self._napping = False
        self._error: SpeechUnavailable | None = None
        self._follower = self._loop.create_task(self._follow(), name=f"speech-follow-{audio.name}")
        self._closed = False

    async def _job(self, priority: int, work: Any, *args: Any) -> Any:
        """One blocking step in the pool, its failure sorted: a file we cannot read is this call's
        problem; anything Vosk raises counts against the language's breaker."""
        try:
            recognizer = await self._recognizer
            job = self._engine._pool.submit(priority, work, recognizer, *args)
            if priority == BACKGROUND:
                self._queued = job
            try:
                return await asyncio.wrap_future(job)
            finally:
                self._queued = None
        except OSError as exc:
            raise SpeechUnavailable(f"unreadable recording: {exc}") from exc
        except Exception as exc:  # Vosk raised: DTMF for this call, and one more failure
            if not self._engine._pool.closed:  # (not the pool shut down at stop)
                self._breaker.failed()
            raise SpeechUnavailable(f"recognition failed: {exc}") from exc

    async def _feed(self, priority: int = BACKGROUND) -> None:
        self.fed, found = await self._job(priority, _feed_from, self.audio, self.fed)
        self.found = self.found or found

    async def _follow(self) -> None:
        """The owned task reading the recording as it grows, until the recording command ends.
        finish() stops it only where nothing is lost: napping, or its job still waiting in the
        pool (not started, so the offset has not moved); a piece being decoded is counted."""
        try:
            with contextlib.suppress(Exception):  # made at once (urgent); a failure is met again below
                await self._recognizer
            while not self._ended:
                await self._feed()
                if self._ended:
                    break
                self._napping = True
                try:
                    await asyncio.sleep(FOLLOW_SECONDS)
                finally:
                    self._napping = False
        except asyncio.CancelledError:
            if not self._ended:  # close(), not finish()
                raise
        except SpeechUnavailable as exc:  # told by finish()
            self._error = exc

    async def finish(self) -> Recognition:
        """The recording command has ended: decode the rest and give the result, within the
        engine's deadline (counted from now, the end of the recording). Asterisk replies before
        it closes the file, so the rest is read until the file stops growing."""
        started = time.perf_counter()
        self.fed_while_recording = self.fed
        self._ended = True
        if self._napping:
            self._follower.cancel()
        elif self._queued is not None:
            # Its piece waits behind other callers' background work: take it back, and read it
            # below at the priority of a caller waiting (cancel() fails if it has started).
            self._queued.cancel()
        try:
            async with asyncio.timeout(self._engine.deadline):
                await asyncio.wait([self._follower])  # its own end (a cancelled nap is one)
                if self._error is not None:
                    raise self._error
                await self._feed(URGENT)
                for _ in range(SETTLE_CHECKS):
                    await asyncio.sleep(SETTLE_SECONDS)
                    size = await asyncio.to_thread(file_size, self.audio)
                    if size is None or size <= self.fed:  # (smaller: Asterisk cut trailing silence off)
                        break
                    await self._feed(URGENT)
                if not self.fed:  # nothing recorded: nothing to recognise, and no proof the model works
                    return Recognition("", (), time.perf_counter() - started)
                recognition: Recognition = await self._job(URGENT, final_result, started)
        except TimeoutError:
            # Late counts as failing, whether the model is broken or the machine overloaded: three in
            # a row turn speech off for the cool-off, which also sheds the load.
            self._breaker.failed()
            raise SpeechUnavailable(f"recognition not done {self._engine.deadline} s after the recording") from None
        self._breaker.succeeded()
        return recognition

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._follower.cancel()
            self._engine._streams -= 1


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
        streams: int = 20,
        deadline: float = 3.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.models = dict(models)
        self.deadline = deadline
        self._pool = PriorityPool(workers, "speech")
        self._loaded: dict[str, Any] = {}
        self._broken: dict[str, str] = {}  # language -> why its model cannot be used
        self._loading: dict[str, asyncio.Task[None]] = {}
        self.max_streams = streams
        self._streams = 0  # answers being recognised now
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
            # A thread of its own: a load takes seconds, and the pool's workers are the callers'.
            model = await asyncio.to_thread(_load_model, str(path))
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

    def follow(self, audio: Path, language: str, phrases: list[str] | None) -> Utterance:
        """Start recognising a recording that is about to be written (see :class:`Utterance`).
        Raises SpeechUnavailable when this language cannot be recognised now, or every stream is
        taken: the caller gets DTMF at once rather than waiting in line (not counted as a failure)."""
        model = self._loaded.get(language)
        if model is None or self.breaker(language).open:
            raise SpeechUnavailable(self._broken.get(language, "breaker open" if model else "model not loaded"))
        if self._streams >= self.max_streams:
            raise SpeechUnavailable("all recognizers busy")
        utterance = Utterance(self, language, model, audio, phrases)
        self._streams += 1
        return utterance

    def close(self) -> None:
        self._pool.shutdown()
