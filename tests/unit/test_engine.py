"""The menu engine walking the sample menu with a scripted caller (no Asterisk needed)."""

from ivr.config import SAMPLE_MENU
from ivr.menu.engine import CallContext, MenuEngine, RouteRequest, SelfServed
from ivr.menu.loader import load_menu, parse_menu_text
from ivr.menu.schema import CustomerClass
from ivr.prompts import PromptLibrary

MENU = load_menu(SAMPLE_MENU)
PROMPTS = PromptLibrary("/srv/p")


class ScriptedCaller:
    """Presses the next scripted key when the IVR waits for one; '-' means silence."""

    def __init__(self, keys: str, barge_in: bool = False) -> None:
        self.keys = list(keys)
        self.barge_in = barge_in
        self.played: list[str] = []
        self.variables: dict[str, str] = {}

    def _next(self) -> str | None:
        if not self.keys:
            return None
        key = self.keys.pop(0)
        return None if key == "-" else key

    async def stream_file(self, path: str, escape_digits: str = "") -> str | None:
        self.played.append(path)
        if self.barge_in and escape_digits and self.keys and self.keys[0] in escape_digits:
            return self._next()
        return None

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return self._next()

    async def set_variable(self, name: str, value: str | int) -> None:
        self.variables[name] = str(value)


def call(customer_class: CustomerClass = CustomerClass.PUBLIC) -> CallContext:
    return CallContext("1.1", "13800000001", "", customer_class, "zh")


async def run(keys: str, customer_class: CustomerClass = CustomerClass.PUBLIC, **kw: object):
    caller = ScriptedCaller(keys, **kw)  # type: ignore[arg-type]
    ctx = call(customer_class)
    ending = await MenuEngine(MENU, PROMPTS).run(caller, ctx)
    return ending, ctx, caller


async def test_balance_is_self_served() -> None:
    ending, ctx, caller = await run("111")
    assert ending == SelfServed("goodbye")
    assert ctx.path == ["start", "welcome", "main", "inquiries", "balance_check", "account_pin", "balance", "goodbye"]
    assert caller.played[-2:] == ["/srv/p/zh/balance_info", "/srv/p/zh/goodbye"]


async def test_english_selection_changes_prompts_and_channel_language() -> None:
    _, ctx, caller = await run("211")
    assert ctx.language == "en"
    assert caller.variables["CHANNEL(language)"] == "en"
    assert caller.played[-1] == "/srv/p/en/goodbye"


async def test_a_menu_key_pressed_at_the_language_prompt_is_typed_ahead() -> None:
    ending, ctx, caller = await run("0", barge_in=True)  # "0" (agent) during the language prompt
    assert ctx.language == "zh" and ctx.path == ["start", "welcome", "main", "agent", "agent_route"]
    assert "/srv/p/zh/main_menu" not in caller.played  # the caller did not have to hear it
    assert isinstance(ending, RouteRequest) and ending.skill == "general"


async def test_key_account_goes_straight_to_its_desk_with_top_priority() -> None:
    ending, _, _ = await run("", CustomerClass.KEY)
    assert ending == RouteRequest("keyaccount")


async def test_public_agent_route_has_public_priority() -> None:
    ending, _, _ = await run("10")
    assert ending == RouteRequest("general")


async def test_three_invalid_keys_fall_back() -> None:
    ending, ctx, caller = await run("1888")
    assert ending == RouteRequest("fallback")
    assert ctx.fallback_reason == "invalid_input"
    assert caller.played.count("/srv/p/zh/invalid") == 3


async def test_silence_falls_back_with_no_input_reason() -> None:
    ending, ctx, _ = await run("1---")
    assert ending == RouteRequest("fallback")
    assert ctx.fallback_reason == "no_input"


async def test_invalid_then_valid_key_continues() -> None:
    ending, _, _ = await run("190")
    assert ending == RouteRequest("general")


async def test_key_pressed_during_the_prompt_interrupts_it() -> None:
    ending, _, caller = await run("111", barge_in=True)
    assert ending == SelfServed("goodbye")
    assert "/srv/p/zh/main_menu" in caller.played


async def test_back_returns_to_the_previous_menu() -> None:
    ending, ctx, _ = await run("11*0")
    assert ctx.path[-4:] == ["back", "main", "agent", "agent_route"]
    assert isinstance(ending, RouteRequest) and ending.skill == "general"


async def test_sensitive_input_is_masked_but_kept_for_the_flow() -> None:
    ending, ctx, _ = await run("131" + "12345678#")
    assert ending == RouteRequest("broadband")
    assert ctx.variables["broadband_account"] == "12345678"
    assert ctx.inputs["broadband_account"] == "********"


async def test_too_short_input_retries_then_falls_back() -> None:
    ending, ctx, _ = await run("131" + "12#" + "34#" + "56#")
    assert ending == RouteRequest("fallback")
    assert ctx.fallback_reason == "invalid_input"


async def test_business_desk_refuses_public_callers_and_admits_business() -> None:
    _, ctx, _ = await run("15" + "0")
    assert ctx.path[-4:] == ["business_only", "main", "agent", "agent_route"]
    ending, _, _ = await run("15", CustomerClass.BUSINESS)
    assert ending == RouteRequest("keyaccount")


CLOSED_MENU = """\
name: hours
languages: [en]
default_language: en
start: check
prompts: {closed: {en: closed}}
nodes:
  check:
    type: branch
    cases: [{when: {business_hours: false}, goto: closed}]
    default: agent
  closed: {type: hangup, prompt: closed}
  agent: {type: route, skill: general}
"""


async def test_business_hours_branch_asks_the_routing_rules() -> None:
    menu = parse_menu_text(CLOSED_MENU)

    async def ending_when(is_open: bool):
        engine = MenuEngine(menu, PROMPTS, is_open=lambda: is_open)
        return await engine.run(ScriptedCaller(""), CallContext("1", "", "", CustomerClass.PUBLIC, "en"))

    assert await ending_when(True) == RouteRequest("general")
    assert await ending_when(False) == SelfServed("closed")


async def test_a_flood_of_wrong_keys_ends_at_the_fallback_in_bounded_steps() -> None:
    """A caller (or a fax, or a stuck key) pouring out keys: each menu takes its retries and moves
    on; the call ends at the fallback queue, not in a loop, and no key is kept beyond its use."""
    ending, ctx, caller = await run("1" + "9" * 5000, barge_in=True)  # Mandarin, then 9s forever
    assert ending == RouteRequest("fallback") and ctx.fallback_reason == "invalid_input"
    assert len(ctx.path) < 10 and len(caller.keys) > 4900  # three tries used, the rest never read


async def test_digits_past_max_digits_are_not_taken() -> None:
    # Mandarin, faults, broadband: 40 digits where at most 12 are taken (as Asterisk's GET DATA would).
    ending, ctx, caller = await run("131" + "1234567890" * 4 + "#")
    assert ending == RouteRequest("broadband")
    assert ctx.variables["broadband_account"] == "123456789012" and len(caller.keys) == 29


async def test_each_step_is_reported_without_the_caller_waiting_for_it() -> None:
    steps: list[list[str]] = []
    caller, ctx = ScriptedCaller("10"), call()
    ending = await MenuEngine(MENU, PROMPTS, on_step=lambda c: steps.append(list(c.path))).run(caller, ctx)
    assert isinstance(ending, RouteRequest)
    assert ctx.path == ["start", "welcome", "main", "agent", "agent_route"]
    # Each node the caller stops at, with the path up to it; the branches (start, agent) only decide.
    assert steps == [["start", "welcome"], ["start", "welcome", "main"], ctx.path]


def test_the_call_context_is_built_field_for_field_as_its_dataclass_says() -> None:
    """CallContext's __init__ is written out (a compiled one costs a quarter of dataclasses'):
    its parameters and defaults must be the dataclass's fields, each mutable default fresh."""
    import dataclasses
    import inspect

    fields = dataclasses.fields(CallContext)
    parameters = list(inspect.signature(CallContext).parameters.values())
    assert [p.name for p in parameters] == [f.name for f in fields]
    first = CallContext("u", "1", "", CustomerClass.PUBLIC, "en")
    second = CallContext("u", "1", "", CustomerClass.PUBLIC, "en")
    for f in fields:
        if f.default is not dataclasses.MISSING:
            assert getattr(first, f.name) == f.default, f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert getattr(first, f.name) == f.default_factory(), f.name
            assert getattr(first, f.name) is not getattr(second, f.name), f.name  # not shared between calls
    assert first == second
    restored = CallContext(**{f.name: getattr(first, f.name) for f in fields})
    assert restored == first


async def test_a_prompt_path_is_asked_of_its_library_once_and_each_library_keeps_its_own() -> None:
    class Counting:
        def __init__(self, root: str) -> None:
            self.root, self.asked = root, 0

        def path(self, prompt_id: str, language: str) -> str:
            self.asked += 1
            return f"{self.root}/{language}/{prompt_id}"

    menu = load_menu(SAMPLE_MENU)
    first, second = Counting("/one"), Counting("/two")
    for library in (first, second, first):
        for _ in range(3):
            engine = MenuEngine(menu, library)
            context = CallContext("u", "1", "", CustomerClass.PUBLIC, "zh")
            assert engine._prompt("main_menu", context) == f"{library.root}/zh/main_menu"
    assert (first.asked, second.asked) == (1, 1)
