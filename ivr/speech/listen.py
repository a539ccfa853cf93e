"""Capturing a caller's answer and turning it into an intent: the ``listen`` node's machinery.

FastAGI carries no audio, so the answer is recorded by Asterisk (``RECORD FILE`` with silence
detection and a length cap) into a spool folder both sides see: Asterisk by its own path (inside
the chroot, or a docker volume), the controller by the host path of the same folder. The file is
recognised against the node's phrases as Asterisk writes it (ivr/speech/recognizer.py's Utterance)
and deleted unless the node keeps recordings.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

from ivr.agi.channel import AgiCommandFailed, RecordResult, TalkResult
from ivr.menu.schema import ListenNode
from ivr.speech.digits import digit_words, words_to_digits
from ivr.speech.recognizer import SLN_RATE, SpeechEngine, SpeechUnavailable, Utterance, file_size

log = logging.getLogger(__name__)



async def settled_size(audio: Path) -> int | None:
    """Asterisk replies before it closes the file: wait (briefly) until it stops growing. File
    calls go to a thread: the folder may be a shared volume, and the event loop must not wait."""
    size = await asyncio.to_thread(file_size, audio)
    for _ in range(5):
        if size is None:
            return None
        await asyncio.sleep(0.03)
        now = await asyncio.to_thread(file_size, audio)
        if now == size:
            return size
        size = now
    return size


class Recorder(Protocol):
    async def record_file(
        self, path: str, file_format: str = "wav", escape_digits: str = "#", *, timeout_ms: int = 10000,
        silence_seconds: int | None = 2, beep: bool = False,
    ) -> RecordResult: ...


class BargeInVoice(Recorder, Protocol):
    async def start_capture(self, received_path: str, mixed_path: str) -> None: ...
    async def stop_capture(self) -> None: ...
    async def play_detecting_talk(self, path: str, *, silence_ms: int, min_ms: int, max_ms: int,
                                  max_seconds: float = 120.0) -> TalkResult: ...


@dataclass(frozen=True)
class Recordings:
    """One folder seen from both sides."""

    asterisk_dir: str  # as Asterisk writes it
    host_dir: Path  # as the controller reads it


@dataclass(frozen=True)
class Heard:
    intent: str | None = None
    key: str | None = None  # a DTMF key pressed instead of speaking
    text: str = ""
    confidence: float = 0.0
    unavailable: str | None = None  # why speech cannot be used for this call (DTMF then)
    recording: str | None = None  # kept recording (keep_recording), host path
    barged_in: bool = False  # the caller spoke over the prompt


@dataclass
class NodeMetrics:
    attempts: int = 0
    matches: int = 0
    no_match: int = 0
    keys: int = 0
    fallbacks: int = 0  # sent to the DTMF fallback (no match after retries, or speech unavailable)
    errors: int = 0
    recognitions: int = 0
    latency_total: float = 0.0  # seconds from the end of each recording to its result
    latency_max: float = 0.0
    audio_seconds: float = 0.0  # of answers recognised
    followed_seconds: float = 0.0  # of which decoded while the caller was still being recorded

    def as_dict(self) -> dict[str, float]:
        data: dict[str, float] = asdict(self)
        data["latency_mean"] = round(self.latency_total / self.recognitions, 4) if self.recognitions else 0.0
        return data


def _normalize(text: str) -> str:
    return " ".join(text.split()).casefold()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", text)[:64]


@dataclass
class SpeechService:
    engine: SpeechEngine
    recordings: Recordings
    metrics: dict[str, NodeMetrics] = field(default_factory=dict)

    def available(self, language: str) -> bool:
        return self.engine.available(language)

    def count_fallback(self, node_id: str) -> None:
        self.metrics.setdefault(node_id, NodeMetrics()).fallbacks += 1

    async def listen(self, recorder: BargeInVoice, uniqueid: str, node_id: str, node: ListenNode,
                     language: str, escape_digits: str, *, over_prompt: str | None = None) -> Heard:
        """Record one answer and match it to an intent; with ``over_prompt``, play that prompt while
        listening (barge-in). A caller hanging up surfaces as ChannelHangup."""
        phrases = sorted({p for intent in node.intents.values() for p in intent.phrases.get(language, [])})
        if over_prompt is not None:
            heard = await self.capture_over_prompt(
                recorder, uniqueid, node_id, language, over_prompt, escape_digits, phrases,
                max_seconds=node.max_seconds, silence_seconds=node.silence_seconds, keep=node.keep_recording)
        else:
            heard = await self.capture(recorder, uniqueid, node_id, language, escape_digits, phrases,
                                       max_seconds=node.max_seconds, silence_seconds=node.silence_seconds,
                                       keep=node.keep_recording)
        metrics = self.metrics[node_id]
        if heard.text and heard.confidence >= node.threshold:
            said = _normalize(heard.text)
            for intent_name, intent in node.intents.items():
                if said in {_normalize(p) for p in intent.phrases.get(language, [])}:
                    metrics.matches += 1
                    return replace(heard, intent=intent_name)
        if heard.key is None and heard.unavailable is None:
            metrics.no_match += 1
        return heard

    async def listen_digits(self, recorder: Recorder, uniqueid: str, node_id: str, language: str,
                            escape_digits: str, *, max_seconds: int, threshold: float) -> Heard:
        """Record digits said one by one (an account, a phone number); ``Heard.text`` is the digits."""
        words = digit_words(language)
        if not words:
            return Heard(unavailable=f"no digit words for {language!r}")
        heard = await self.capture(recorder, uniqueid, node_id, language, escape_digits, sorted(words),
                                   max_seconds=max_seconds, silence_seconds=2, keep=False)
        metrics = self.metrics[node_id]
        digits = words_to_digits(heard.text, language) if heard.confidence >= threshold else None
        if digits:
            metrics.matches += 1
            return replace(heard, text=digits)
        if heard.key is None and heard.unavailable is None:
            metrics.no_match += 1
        return replace(heard, text="")

    async def capture(self, recorder: Recorder, uniqueid: str, node_id: str, language: str, escape_digits: str,
                      phrases: list[str] | None, *, max_seconds: int, silence_seconds: int, keep: bool) -> Heard:
        """Record one answer and recognise it (text and the weakest word's confidence)."""
        metrics = self.metrics.setdefault(node_id, NodeMetrics())
        metrics.attempts += 1
        name = f"{_safe(uniqueid)}-{_safe(node_id)}-{uuid.uuid4().hex[:8]}"
        # Headerless 8 kHz audio: nothing to be rewritten when Asterisk closes the file after replying.
        audio = self.recordings.host_dir / f"{name}.sln"
        kept = False
        utterance: Utterance | None = None
        try:
            await asyncio.to_thread(self.recordings.host_dir.mkdir, parents=True, exist_ok=True)
            try:  # recognised as it is recorded
                utterance = self.engine.follow(audio, language, phrases)
            except SpeechUnavailable as exc:  # DTMF at once, rather than recording for nothing
                metrics.errors += 1
                return Heard(unavailable=str(exc))
            try:
                result = await recorder.record_file(
                    f"{self.recordings.asterisk_dir.rstrip('/')}/{name}", "sln", escape_digits,
                    timeout_ms=max_seconds * 1000, silence_seconds=silence_seconds,
                )
            except AgiCommandFailed as exc:
                metrics.errors += 1
                return Heard(unavailable=f"recording failed: {exc}")
            if result.digit:
                metrics.keys += 1
                return Heard(key=result.digit)
            if result.ended_by == "writefile":  # Asterisk could not write: disk full, folder gone
                metrics.errors += 1
                return Heard(unavailable="recording could not be written")
            heard = await self._recognize(utterance, name, result.end_position > 0, metrics, keep)
            kept = heard.recording is not None
            return heard
        except OSError as exc:
            metrics.errors += 1
            return Heard(unavailable=f"recording folder unusable: {exc}")
        finally:
            if utterance is not None:
                utterance.close()
            if not kept:
                await asyncio.to_thread(audio.unlink, missing_ok=True)

    async def _recognize(self, utterance: Utterance, name: str, recorded: bool, metrics: NodeMetrics,
                         keep: bool) -> Heard:
        """The recording has ended: the rest of it decoded and the result."""
        try:
            recognition = await utterance.finish()
        except SpeechUnavailable as exc:
            metrics.errors += 1
            return Heard(unavailable=str(exc))
        if not utterance.found and recorded:  # Asterisk recorded, we cannot see it: a folder mix-up
            log.error("recording %s not found in %s: check the recordings folders", name, self.recordings.host_dir)
            metrics.errors += 1
            return Heard(unavailable="recording not found")
        if not utterance.fed:
            return Heard()  # nothing recorded
        metrics.recognitions += 1
        metrics.latency_total += recognition.seconds
        metrics.latency_max = max(metrics.latency_max, recognition.seconds)
        metrics.audio_seconds += utterance.fed / (2 * SLN_RATE)
        metrics.followed_seconds += utterance.fed_while_recording / (2 * SLN_RATE)
        return Heard(text=recognition.text, confidence=recognition.confidence,
                     recording=str(utterance.audio) if keep else None)

    async def capture_over_prompt(self, voice: BargeInVoice, uniqueid: str, node_id: str, language: str,
                                  prompt: str, escape_digits: str, phrases: list[str] | None, *,
                                  max_seconds: int, silence_seconds: int, keep: bool) -> Heard:
        """Barge-in: the caller may answer while the prompt plays. Their side of the call is captured
        from the prompt's start (MixMonitor), so words said over the prompt are not lost; the prompt
        stops once they have spoken and fallen silent (BackgroundDetect), or on a key. If the prompt
        ends first, listening goes on until silence, as without barge-in. ``Heard.barged_in`` says
        whether the caller spoke over the prompt."""
        metrics = self.metrics.setdefault(node_id, NodeMetrics())
        metrics.attempts += 1
        name = f"{_safe(uniqueid)}-{_safe(node_id)}-{uuid.uuid4().hex[:8]}"
        inside = self.recordings.asterisk_dir.rstrip("/")
        received = self.recordings.host_dir / f"{name}-rx.sln"
        leftovers = [self.recordings.host_dir / f"{name}-mix.sln", self.recordings.host_dir / f"{name}-rest.sln"]
        kept = False
        utterance: Utterance | None = None
        try:
            await asyncio.to_thread(self.recordings.host_dir.mkdir, parents=True, exist_ok=True)
            try:  # the caller's side, recognised as it is captured
                utterance = self.engine.follow(received, language, phrases)
            except SpeechUnavailable as exc:
                metrics.errors += 1
                return Heard(unavailable=str(exc))
            talked: int | None = None
            try:
                await voice.start_capture(f"{inside}/{name}-rx.sln", f"{inside}/{name}-mix.sln")
                try:
                    talk = await voice.play_detecting_talk(prompt, silence_ms=silence_seconds * 1000, min_ms=250,
                                                           max_ms=max_seconds * 1000)
                    if talk.digit:
                        metrics.keys += 1
                        return Heard(key=talk.digit)
                    talked = talk.talked_ms
                    if talked is None:  # the prompt ended first: listen on until silence
                        result = await voice.record_file(f"{inside}/{name}-rest", "sln", escape_digits,
                                                         timeout_ms=max_seconds * 1000,
                                                         silence_seconds=silence_seconds)
                        if result.digit:
                            metrics.keys += 1
                            return Heard(key=result.digit)
                        if result.ended_by == "writefile":
                            metrics.errors += 1
                            return Heard(unavailable="recording could not be written")
                finally:
                    await voice.stop_capture()
            except AgiCommandFailed as exc:
                metrics.errors += 1
                return Heard(unavailable=f"capture failed: {exc}")
            heard = await self._recognize(utterance, name, True, metrics, keep)
            kept = heard.recording is not None
            return replace(heard, barged_in=talked is not None)
        except OSError as exc:
            metrics.errors += 1
            return Heard(unavailable=f"recording folder unusable: {exc}")
        finally:
            if utterance is not None:
                utterance.close()
            for path in leftovers if kept else [received, *leftovers]:
                await asyncio.to_thread(path.unlink, missing_ok=True)

    def snapshot(self) -> dict[str, object]:
        return {
            "models": self.engine.status(),
            "breakers_open": self.engine.breakers_open,
            "nodes": {node: m.as_dict() for node, m in self.metrics.items()},
        }
