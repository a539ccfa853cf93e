"""Who is calling: customer lookup by caller number, in Redis.

A hotline must never keep a caller waiting for its own database: a lookup that fails or takes
longer than its deadline answers "public" and the call goes on.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from ivr.menu.schema import CustomerClass

log = logging.getLogger(__name__)

CUSTOMER_KEY = "hotline:customer:{number}"


def normalize_number(raw: str) -> str:
    """Digits only (a leading + kept): caller IDs arrive as free text from the network."""
    raw = raw.strip()
    digits = re.sub(r"[^0-9]", "", raw)[:32]
    return ("+" + digits) if raw.startswith("+") and digits else digits


def mask_number(number: str) -> str:
    """For logs: enough to correlate, not enough to identify."""
    return number if len(number) <= 4 else "*" * (len(number) - 4) + number[-4:]


@dataclass(frozen=True)
class Customer:
    number: str
    customer_class: CustomerClass = CustomerClass.PUBLIC
    name: str = ""
    account: str = ""
    language: str | None = None
    known: bool = False
    urgent: bool = False  # e.g. service to be restored after payment: escalates priority


class CustomerDirectory:
    def __init__(self, redis: Redis, *, timeout: float = 1.0) -> None:
        self._redis = redis
        self._timeout = timeout

    async def lookup(self, number: str) -> Customer:
        if not number:
            return Customer(number)
        try:
            async with asyncio.timeout(self._timeout):
                fields = await self._redis.hgetall(CUSTOMER_KEY.format(number=number))
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("customer lookup for %s failed (%s); treating as public", mask_number(number), exc)
            return Customer(number)
        if not fields:
            return Customer(number)
        data = {
            k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in fields.items()
        }
        try:
            customer_class = CustomerClass(data.get("class", "public"))
        except ValueError:
            customer_class = CustomerClass.PUBLIC
        return Customer(
            number=number,
            customer_class=customer_class,
            name=data.get("name", ""),
            account=data.get("account", ""),
            language=data.get("language") or None,
            known=True,
            urgent=data.get("urgent", "").lower() in ("1", "true", "yes"),
        )

    async def save(self, customer: Customer) -> None:
        mapping: dict[FieldT, EncodableT] = {
            "class": customer.customer_class.value,
            "name": customer.name,
            "account": customer.account,
            "language": customer.language or "",
            "urgent": "1" if customer.urgent else "",
        }
        await self._redis.hset(CUSTOMER_KEY.format(number=customer.number), mapping=mapping)
