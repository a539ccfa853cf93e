"""Live-queue changes pushed to dashboard clients (the wallboard's server-sent events).

Every change is numbered (``seq``) and serialized once, whoever listens. Each client has a
backlog of its own, drained by its own HTTP response, so a slow browser never holds up the AMI
event dispatcher or the other clients. A client that falls a whole backlog behind is not waited
for: its backlog is dropped and it is sent a fresh snapshot instead, which it can tell from the
numbering (nothing is lost from its view: the snapshot has everything up to that number).
"""

from __future__ import annotations

import asyncio

import orjson

# Changes a client may have waiting before it is resent a snapshot instead: 2 s of a
# 10,000-events-a-second storm, about 5 MB.
DEFAULT_BACKLOG = 20_000


class Subscription:
    """One client's backlog of serialized changes."""

    def __init__(self, feed: LiveFeed, backlog: int) -> None:
        self._feed = feed
        self._backlog = backlog
        self._items: list[str] = []
        self._ready = asyncio.Event()
        self.lagged = False  # the backlog overflowed: the client needs a snapshot, not the changes
        self.closed = False

    def put(self, item: str) -> None:
        if len(self._items) >= self._backlog:
            self._items.clear()
            self.lagged = True
        elif not self.lagged:
            self._items.append(item)
        self._ready.set()

    async def next_changes(self) -> list[str]:
        """Waits for changes and returns all waiting (oldest first); ``[]`` once closed or lagged."""
        while not self._items and not self.lagged and not self.closed:
            self._ready.clear()
            await self._ready.wait()
        if self.lagged or self.closed:
            self._items = []
            return []
        items, self._items = self._items, []
        return items

    def resume(self) -> None:
        """The client was sent a snapshot: changes from here on are queued again."""
        self.lagged = False

    def close(self) -> None:
        self.closed = True
        self._ready.set()
        self._feed.unsubscribe(self)


class LiveFeed:
    def __init__(self, backlog: int = DEFAULT_BACKLOG) -> None:
        self.seq = 0  # the number of the last change published
        self.closed = False
        self._backlog = backlog
        self._subscribers: set[Subscription] = set()

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    def publish(self, kind: str, at: float, data: dict[str, object]) -> None:
        """One change: ``kind`` says how the client applies ``data``; ``at`` is when it happened
        (Asterisk's event time), so a client can tell how late it shows it."""
        self.seq += 1
        if not self._subscribers:
            return
        # orjson: the standard json module was a sixth of the controller's time in an AMI storm.
        text = orjson.dumps({"seq": self.seq, "kind": kind, "at": at, **data}).decode()
        for subscriber in self._subscribers:
            subscriber.put(text)

    def subscribe(self) -> Subscription:
        """A new client's backlog. Take its snapshot (and ``seq``) in the same step, before
        awaiting anything, so that the backlog starts right after what the snapshot shows."""
        subscription = Subscription(self, self._backlog)
        if self.closed:  # a request that came in while the controller stops: its stream ends at once
            subscription.closed = True
        else:
            self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def close(self) -> None:
        """Ends every client's stream, and those opened from now on (the controller is stopping)."""
        self.closed = True
        for subscription in list(self._subscribers):
            subscription.close()
