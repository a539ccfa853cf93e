"""The live view's changes (one per AMI event, stamped with Asterisk's time), the push feed's
backlogs, and the Redis mirror's single writer."""

import asyncio
import json

from redis.asyncio import Redis

from routing.ami import parse_message
from routing.live import LiveQueues
from routing.live_feed import LiveFeed
from tests.unit.test_ami import recorded_blocks


class _Ami:
    """Just enough of AmiClient for LiveQueues to register its handlers."""

    ready = True
    connections = 1

    def on(self, event: str, handler: object) -> None:
        pass


def recorded(name: str):
    block = next(b for b in recorded_blocks() if b.startswith(f"Event: {name}\r\n"))
    message = parse_message(block)
    assert message is not None
    return message


async def test_every_subscriber_gets_every_change_in_order_serialized_once() -> None:
    feed = LiveFeed()
    feed.publish("join", 1.0, {"x": 1})  # nobody listens: numbered all the same
    first, second = feed.subscribe(), feed.subscribe()
    for n in range(3):
        feed.publish("agent", 2.0 + n, {"n": n})
    one, two = await first.next_changes(), await second.next_changes()
    assert one == two and [json.loads(c)["seq"] for c in one] == [2, 3, 4]
    assert json.loads(one[0]) == {"seq": 2, "kind": "agent", "at": 2.0, "n": 0}
    assert one[0] is two[0]  # one string for all


async def test_a_client_a_whole_backlog_behind_is_resent_a_snapshot_not_waited_for() -> None:
    feed = LiveFeed(backlog=3)
    slow, fast = feed.subscribe(), feed.subscribe()
    for n in range(3):
        feed.publish("agent", 1.0, {"n": n})
    assert len(await fast.next_changes()) == 3
    feed.publish("agent", 1.0, {"n": 3})  # the slow one's fourth unread change
    assert await slow.next_changes() == [] and slow.lagged
    slow.resume()  # what the stream does after sending the snapshot
    feed.publish("agent", 1.0, {"n": 4})
    assert [json.loads(c)["seq"] for c in await slow.next_changes()] == [5]
    assert [json.loads(c)["seq"] for c in await fast.next_changes()] == [4, 5]


async def test_closing_the_feed_ends_every_waiting_stream() -> None:
    feed = LiveFeed()
    subscription = feed.subscribe()
    waiting = asyncio.create_task(subscription.next_changes())
    await asyncio.sleep(0)
    feed.close()
    assert await asyncio.wait_for(waiting, 1) == [] and subscription.closed and feed.clients == 0


async def test_a_stream_opened_while_the_controller_stops_ends_at_once() -> None:
    feed = LiveFeed()
    feed.close()
    late = feed.subscribe()
    assert late.closed and feed.clients == 0
    assert await asyncio.wait_for(late.next_changes(), 1) == []


async def test_our_own_events_get_in_even_when_the_event_queue_is_full() -> None:
    from routing.ami import AmiClient

    ami = AmiClient("127.0.0.1", 1, "u", "s")
    ami._events = asyncio.Queue(maxsize=2)
    ami.inject("a")
    ami.inject("b")
    ami.inject(AmiClient.LOST_EVENT)  # full: the oldest makes room
    names = [ami._events.get_nowait().get("Event") for _ in range(2)]
    assert names == ["b", AmiClient.LOST_EVENT] and ami.dropped_events == 1


async def test_each_queue_event_is_one_change_stamped_with_asterisks_time(redis: Redis) -> None:
    live = LiveQueues(_Ami(), redis)  # type: ignore[arg-type]
    changes = live.feed.subscribe()
    join = recorded("QueueCallerJoin")
    await live._on_join(join)
    await live._on_abandon(recorded("QueueCallerAbandon"))
    await live._on_leave(recorded("QueueCallerLeave"))
    published = [json.loads(c) for c in await changes.next_changes()]
    assert [c["kind"] for c in published] == ["join", "leave", "leave"]
    assert published[0]["at"] == float(join["Timestamp"])
    caller = published[0]["caller"]
    assert (caller["uniqueid"], caller["queue"], caller["customer_class"]) == (
        join["Uniqueid"], "hotline-general", "public")
    assert published[1]["abandoned"] and not live.waiting
    await live._on_join(join)
    live.priority_raised(live.waiting[join["Uniqueid"]], 7)  # aging: no AMI event says so
    _, raised = [json.loads(c) for c in await changes.next_changes()]
    assert (raised["kind"], raised["uniqueid"], raised["priority"]) == ("priority", join["Uniqueid"], 7)
    assert live.waiting[join["Uniqueid"]].priority == 7
    # No Timestamp (an older manager.conf): the time it was handled.
    no_stamp = parse_message("Event: QueueMemberStatus\r\nQueue: q\r\nInterface: Local/a@x\r\nStatus: 1\r\n"
                             "MemberName: <b>agent</b>")
    assert no_stamp is not None
    live._clock = lambda: 123.0
    await live._on_member(no_stamp)
    [agent] = [json.loads(c) for c in await changes.next_changes()]
    assert (agent["kind"], agent["at"], agent["agent"]["name"], agent["agent"]["state"]) == (
        "agent", 123.0, "<b>agent</b>", "available")


async def test_the_redis_mirror_writes_the_latest_state_and_rewrites_whole_after_a_failure(redis: Redis) -> None:
    live = LiveQueues(_Ami(), redis)  # type: ignore[arg-type]
    await redis.hset("hotline:live:waiting", "left-over-from-an-old-process", "{}")
    await live.flush_mirror()  # the first write is whole: what an earlier process left is gone
    assert await redis.hlen("hotline:live:waiting") == 0
    join = recorded("QueueCallerJoin")
    await live._on_join(join)
    await live.flush_mirror()
    mirrored = json.loads(await redis.hget("hotline:live:waiting", join["Uniqueid"]))
    assert mirrored["customer_class"] == "public"
    await live._on_leave(recorded("QueueCallerLeave"))
    live._redis = Redis(port=1, socket_connect_timeout=0.2)  # Redis gone
    await live.flush_mirror()
    assert live._mirror_rewrite  # unknown now: whole next time
    live._redis, live._redis_paused_until = redis, 0.0
    await live._on_join(join)
    await live.flush_mirror()
    assert await redis.hkeys("hotline:live:waiting") == [join["Uniqueid"].encode()]


async def test_many_events_cost_no_redis_round_trip_each(redis: Redis) -> None:
    """The handlers queue mirror writes; one flush writes the last value of each field."""
    live = LiveQueues(_Ami(), redis)  # type: ignore[arg-type]
    await live.flush_mirror()
    status = "Event: QueueMemberStatus\r\nQueue: q\r\nInterface: Local/a{n}@x\r\nStatus: {s}\r\nMemberName: a{n}"
    for n in range(2000):
        message = parse_message(status.format(n=n % 10, s=1 + n % 2))
        assert message is not None
        await live._on_member(message)  # no await on Redis inside
    assert len(live._mirror_pending) == 10
    await live.flush_mirror()
    assert await redis.hlen("hotline:live:agents") == 10
