"""Self-service answers from the operator's systems: balance, last bill, package, fault status.

``AccountBackend`` is the adapter interface an operator implements against its billing and
ticketing systems. Its methods must return exactly the declared types: the menu engine that
calls them is compiled, and refuses a ``1`` for a ``bool`` or a ``Decimal`` for an ``int`` with a
TypeError, which sends the caller to the fallback queue. ``RedisAccounts`` is the
implementation the sample hotline ships, with accounts kept in Redis (``hotline accounts set``).
Account data is only read after the caller's PIN matched (the ``verify`` node); PINs are stored
as salted hashes, never in clear.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

ACCOUNT_KEY = "hotline:account:{account}"
FIELDS = ("balance_cents", "due_date", "bill_cents", "bill_period", "package", "fault_ticket", "fault_status")


class BackendUnavailable(Exception):
    """The operator's system did not answer in time: the caller hears so and goes on."""


@dataclass(frozen=True)
class AccountFacts:
    """What a caller may ask about; a field the operator's system does not have is None."""

    balance_cents: int | None = None
    due_date: date | None = None
    bill_cents: int | None = None
    bill_period: str | None = None  # YYYY-MM
    package: str | None = None  # a package code; the menu maps codes to prompts
    fault_ticket: str | None = None  # digits
    fault_status: str | None = None  # open, in_progress, closed (the menu maps them to prompts)


class AccountBackend(Protocol):
    async def verify_pin(self, account: str, pin: str) -> bool: ...
    async def facts(self, account: str) -> AccountFacts | None: ...


def hash_pin(pin: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt.encode(), 100_000).hex()
    return f"pbkdf2${salt}${digest}"


def pin_matches(pin: str, stored: str) -> bool:
    try:
        _, salt, _ = stored.split("$", 2)
    except ValueError:
        return False
    return hmac.compare_digest(hash_pin(pin, salt), stored)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


class RedisAccounts:
    """Accounts in Redis hashes; every read has a deadline."""

    def __init__(self, redis: Redis, *, timeout: float = 1.0) -> None:
        self._redis = redis
        self._timeout = timeout

    async def _read(self, account: str) -> dict[str, str]:
        try:
            async with asyncio.timeout(self._timeout):
                raw = await self._redis.hgetall(ACCOUNT_KEY.format(account=account))
        except (TimeoutError, RedisError, OSError) as exc:
            raise BackendUnavailable(str(exc)) from exc
        return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in raw.items()}

    async def verify_pin(self, account: str, pin: str) -> bool:
        stored = (await self._read(account)).get("pin", "")
        # Hashing (100k rounds) is CPU work: off the event loop.
        return bool(stored) and await asyncio.to_thread(pin_matches, pin, stored)

    async def facts(self, account: str) -> AccountFacts | None:
        data = await self._read(account)
        if not data:
            return None
        due = data.get("due_date") or ""
        try:
            due_date = date.fromisoformat(due) if due else None
        except ValueError:
            due_date = None
        return AccountFacts(
            balance_cents=_int(data.get("balance_cents")),
            due_date=due_date,
            bill_cents=_int(data.get("bill_cents")),
            bill_period=data.get("bill_period") or None,
            package=data.get("package") or None,
            fault_ticket=data.get("fault_ticket") if (data.get("fault_ticket") or "").isdigit() else None,
            fault_status=data.get("fault_status") or None,
        )

    async def save(self, account: str, *, pin: str | None = None, **facts: str | int | None) -> None:
        unknown = set(facts) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown account fields: {', '.join(sorted(unknown))}")
        mapping: dict[Any, Any] = {k: str(v) for k, v in facts.items() if v is not None}
        if pin is not None:
            if not (pin.isascii() and pin.isdigit()) or not 4 <= len(pin) <= 8:
                raise ValueError("a PIN is 4 to 8 digits")
            mapping["pin"] = await asyncio.to_thread(hash_pin, pin)
        if mapping:
            await self._redis.hset(ACCOUNT_KEY.format(account=account), mapping=mapping)
