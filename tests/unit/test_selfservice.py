"""Self-service account answers: the PIN check and the spoken facts, against a real Redis."""

import time

from redis.asyncio import Redis

from ivr.menu.engine import CallContext, MenuEngine, SelfServed
from ivr.menu.loader import parse_menu_text
from ivr.menu.schema import CustomerClass
from ivr.prompts import PromptLibrary
from ivr.selfservice import ACCOUNT_KEY, RedisAccounts, pin_matches

MENU = parse_menu_text("""\
name: accounts
languages: [zh]
default_language: zh
start: balance
prompts:
  pin: {zh: 请输入密码}
  wrong: {zh: 密码错误}
  balance_is: {zh: 您的余额为}
  yuan: {zh: 元}
  due: {zh: 缴费截止日期}
  no_data: {zh: 暂无信息}
  down: {zh: 系统繁忙}
  pkg_basic: {zh: 基础套餐}
  bye: {zh: 再见}
nodes:
  balance:
    type: query
    say: [balance_is, "{balance}", yuan, "{balance_cents}", due, "{due_date}", "{package}"]
    values: {basic: pkg_basic}
    missing_prompt: no_data
    unavailable_prompt: down
    requires_verify: pin
    next: bye
  pin: {type: verify, prompt: pin, invalid_prompt: wrong, unavailable_prompt: down, next: balance, fallback: bye}
  bye: {type: hangup, prompt: bye}
""")


class Caller:
    """Keys in the scripted digits; records what the IVR said (prompts and Asterisk's say_*)."""

    def __init__(self, keys: str) -> None:
        self.keys = list(keys)
        self.heard: list[str] = []

    async def stream_file(self, path: str, escape_digits: str = "") -> str | None:
        self.heard.append(path.rsplit("/", 1)[-1])
        return None

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return self.keys.pop(0) if self.keys else None

    async def set_variable(self, name: str, value: str | int) -> None:
        pass

    async def say_number(self, number: int, escape_digits: str = "") -> str | None:
        self.heard.append(f"number:{number}")
        return None

    async def say_digits(self, digits: str, escape_digits: str = "") -> str | None:
        self.heard.append(f"digits:{digits}")
        return None

    async def say_date(self, epoch_seconds: int, escape_digits: str = "") -> str | None:
        self.heard.append(time.strftime("date:%Y-%m-%d", time.gmtime(epoch_seconds)))
        return None


def caller_context() -> CallContext:
    return CallContext("9.1", "13800000001", "", CustomerClass.PUBLIC, "zh", account="A-100")


async def test_facts_are_spoken_only_after_the_pin(redis: Redis) -> None:
    accounts = RedisAccounts(redis)
    await accounts.save("A-100", pin="4321", balance_cents=12345, due_date="2026-12-05", package="basic")
    stored = (await redis.hget(ACCOUNT_KEY.format(account="A-100"), "pin")).decode()
    assert "4321" not in stored and pin_matches("4321", stored)

    caller = Caller("9999#" + "4321#")  # a wrong PIN first, then the right one
    context = caller_context()
    ending = await MenuEngine(MENU, PromptLibrary("/p"), accounts=accounts).run(caller, context)
    assert ending == SelfServed("bye")
    assert context.path == ["balance", "pin", "balance", "bye"]
    assert caller.heard == ["pin", "wrong", "pin", "balance_is", "number:123", "yuan", "number:45", "due",
                            "date:2026-12-05", "pkg_basic", "bye"]
    assert context.inputs == {"pin": "verified", "balance": "told"}  # the PIN itself is kept nowhere
    assert context.verified_account == "A-100"


async def test_wrong_pins_missing_facts_and_a_down_system(redis: Redis) -> None:
    accounts = RedisAccounts(redis)
    await accounts.save("A-100", pin="4321")  # no balance on file
    context = caller_context()
    await MenuEngine(MENU, PromptLibrary("/p"), accounts=accounts).run(Caller("1111#2222#3333#"), context)
    assert context.inputs["pin"] == "failed" and context.path[-1] == "bye"

    caller = Caller("4321#")
    context = caller_context()
    await MenuEngine(MENU, PromptLibrary("/p"), accounts=accounts).run(caller, context)
    assert context.inputs["balance"] == "missing:balance" and "no_data" in caller.heard

    down = RedisAccounts(Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2), timeout=0.5)
    caller = Caller("4321#")
    context = caller_context()
    await MenuEngine(MENU, PromptLibrary("/p"), accounts=down).run(caller, context)
    assert context.inputs["pin"] == "unavailable" and caller.heard[-2:] == ["down", "bye"]
