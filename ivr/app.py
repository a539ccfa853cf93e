"""The composition root: the one place where the hotline's components are built and wired.

Start order: local services (Redis, Asterisk) -> stores -> FastAGI -> AMI -> web. Stop: new IVR
sessions are refused and those in progress drain (cut-off ones reach a queue through the
dialplan's fallback); the local Asterisk stops, and the hangup handlers it runs still reach
``finish``, so calls cut off by the shutdown keep their outcome; then FastAGI, web, AMI and the
owned background tasks stop, and Redis last.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass, field

from aiohttp import web
from redis.asyncio import Redis

from ivr import native
from ivr.agi.server import FastAgiServer
from ivr.calls import CallHandlers, CallStates
from ivr.collector import ClockedCollector
from ivr.config import Settings, SettingsProblem
from ivr.menu.engine import MenuEngine
from ivr.menu.loader import load_menu
from ivr.menu.schema import Menu
from ivr.outcomes import OutcomeStore
from ivr.prompts import PromptLibrary, build_prompts
from ivr.queueing import QueueHandlers
from ivr.reconcile import UNFINISHED_FILE, OutcomeWatchdog, UnfinishedCalls
from ivr.retention import run_recording_expiry
from ivr.revisit import RevisitCall
from ivr.selfservice import RedisAccounts
from ivr.services import LocalPbx, LocalRedis, PortInUse, local_admin_token, local_ami_secret, redis_client
from ivr.speech.listen import Recordings, SpeechService
from ivr.speech.recognizer import SpeechEngine
from ivr.tickets import DescriptionFolder, TicketDesk, TicketStore
from ivr.web import build_web_app
from routing.agents import AgentSync
from routing.aging import PriorityAger
from routing.ami import AmiClient, AmiError
from routing.callbacks import Callbacks
from routing.customers import CustomerDirectory
from routing.live import LiveQueues
from routing.live_feed import LiveFeed
from routing.render import write_asterisk_config
from routing.revisits import ReturnVisits
from routing.router import Router
from routing.rules import RoutingRules, load_rules

log = logging.getLogger(__name__)


class ReloadRefused(Exception):
    """A reload that cannot be applied while running; the running version stays."""


@dataclass
class Hotline:
    settings: Settings
    menu: Menu | None = None
    rules: RoutingRules | None = None
    router: Router | None = None
    agents: AgentSync | None = None
    live: LiveQueues | None = None
    live_feed: LiveFeed = field(default_factory=LiveFeed)  # the wallboard's push
    ager: PriorityAger | None = None
    callbacks: Callbacks | None = None
    watchdog: OutcomeWatchdog | None = None
    unfinished: UnfinishedCalls | None = None
    speech: SpeechService | None = None
    tickets: TicketStore | None = None
    revisits: ReturnVisits | None = None
    redis: Redis | None = None
    local_redis: LocalRedis | None = None
    pbx: LocalPbx | None = None
    agi: FastAgiServer | None = None
    ami: AmiClient | None = None
    outcomes: OutcomeStore | None = None
    directory: CustomerDirectory | None = None
    states: CallStates | None = None
    collector: ClockedCollector | None = None
    _web_runner: web.AppRunner | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _owns_pbx: bool = False  # only what this process started is stopped by it
    _reloading: asyncio.Lock = field(default_factory=asyncio.Lock)  # one publication at a time

    @property
    def admin_token(self) -> str:
        return self.settings.admin_token or local_admin_token(self.settings.state_dir)

    @property
    def ami_secret(self) -> str:
        return self.settings.ami_secret or local_ami_secret(self.settings.state_dir)

    def _recordings(self) -> Recordings:
        """The callers' answers' folder, as Asterisk writes it and as we read it."""
        s = self.settings
        if (s.recordings_dir is None) != (not s.asterisk_recordings_dir):
            raise SettingsProblem("recordings_dir and asterisk_recordings_dir name one folder from both "
                                  "sides: set both or neither")
        if s.recordings_dir is not None and s.asterisk_recordings_dir:
            return Recordings(s.asterisk_recordings_dir, s.recordings_dir)
        if self.pbx is not None:
            inside = f"{self.pbx.instance_dir()}/spool/hotline-speech"
            return Recordings(inside, self.pbx.host_path(inside))
        folder = s.recordings_dir or s.state_dir / "recordings"  # Asterisk on this host, same paths
        return Recordings(str(folder), folder)

    def current_menu(self) -> Menu:
        assert self.menu is not None
        return self.menu

    def current_rules(self) -> RoutingRules:
        assert self.rules is not None
        return self.rules

    async def start(self) -> None:
        s = self.settings
        s.state_dir.mkdir(parents=True, exist_ok=True)
        # Broken rules or a broken menu stop the start with file:line:column messages.
        self.rules = load_rules(s.routing)
        self.menu = load_menu(s.menu, skills=self.rules.skills)

        redis_url = s.redis_url
        if s.local_redis and not redis_url:
            self.local_redis = LocalRedis(s.redis_port, s.state_dir / "redis")
            await self.local_redis.start()
            redis_url = self.local_redis.url
        self.redis = redis_client(redis_url or "redis://127.0.0.1:6379/0", s.redis_max_connections)
        self.outcomes = OutcomeStore(self.redis, s.outcome_journal)
        self.directory = CustomerDirectory(self.redis, timeout=s.customer_lookup_timeout)
        self.states = CallStates(self.redis)
        self.router = Router(self.current_rules, self.redis)

        if s.build_prompts:
            await asyncio.to_thread(build_prompts, self.menu, s.built_prompts_dir)
        asterisk_prompts = s.asterisk_prompts_dir
        if s.local_pbx:
            self.pbx = LocalPbx(
                s.pbx_name,
                ami_port=s.ami_port,
                ami_user=s.ami_user,
                ami_secret=self.ami_secret,
                agi_host=s.agi_host,
                agi_port=s.agi_port,
                sip_port=s.sip_port,
                prompts_dir=s.built_prompts_dir,
                generated_conf=s.state_dir / "asterisk",
                default_queue=self.router.fallback_queue(),
            )
            # Queues come from the routing rules: render them for the instance about to start.
            await asyncio.to_thread(write_asterisk_config, self.rules, s.state_dir / "asterisk")
            asterisk_prompts = asterisk_prompts or (await asyncio.to_thread(self.pbx.instance_dir)) + "/prompts"
        prompts = PromptLibrary(asterisk_prompts or str(s.built_prompts_dir))
        self.speech = SpeechService(
            SpeechEngine(s.speech_models, workers=s.speech_workers, streams=s.speech_streams,
                         deadline=s.speech_deadline),
            await asyncio.to_thread(self._recordings),
        )
        speech = self.speech
        accounts = RedisAccounts(self.redis)  # the sample's account system; an operator's adapter goes here
        self.tickets = TicketStore(self.redis, lambda severity: self.current_rules().tickets.deadline_hours[severity],
                                   zone=lambda: self.current_rules().hours.timezone)
        recordings = self.speech.recordings
        desk = TicketDesk(self.tickets, DescriptionFolder(f"{recordings.asterisk_dir.rstrip('/')}/tickets",
                                                          recordings.host_dir / "tickets"))

        states = self.states
        handlers = CallHandlers(
            self.current_menu,
            lambda menu, is_open: MenuEngine(menu, prompts, is_open=is_open, on_step=states.step,
                                             speech=speech, accounts=accounts, tickets=desk),
            self.directory,
            self.router,
            self.states,
            self.outcomes,
            prompts,
            left_queue=lambda uniqueid: self.live.left.get(uniqueid) if self.live else None,
        )
        queueing = QueueHandlers(
            self.current_menu, self.current_rules, lambda: self.live, lambda: self.callbacks, self.outcomes, prompts
        )
        revisit = RevisitCall(self.current_menu, self.tickets, lambda: self.revisits, prompts)
        self.agi = FastAgiServer(
            {"hotline": handlers.hotline, "finish": handlers.finish,
             "wait": queueing.wait, "callback_done": queueing.callback_done, "revisit": revisit.revisit},
            host=s.agi_host,
            port=s.agi_port,
            command_timeout=s.agi_command_timeout,
            allowed_peers=s.agi_allowed_peers,
        )
        try:
            await self.agi.start()
        except OSError as exc:
            self.agi = None
            raise PortInUse(
                f"FastAGI cannot listen on {s.agi_host}:{s.agi_port} ({exc.strerror}): "
                "is another `hotline serve` running?"
            ) from None
        if self.pbx is not None:
            self._owns_pbx = await self.pbx.start()
            if not self._owns_pbx:
                log.warning("Asterisk instance %r was already running; using it as it is", s.pbx_name)

        self.ami = AmiClient(s.ami_host, s.ami_port, s.ami_user, self.ami_secret, tls=s.ami_tls_context())
        self.agents = AgentSync(self.ami, self.current_rules)  # applies agents after every AMI login
        self.live = LiveQueues(self.ami, self.redis, feed=self.live_feed)  # rebuilt from QueueStatus after every login
        self.live.wrapup_seconds = self.rules.queue_settings.wrapup_seconds
        self.live.handle_times.default_seconds = self.rules.waiting.handle_seconds
        self.ager = PriorityAger(self.ami, self.live, self.current_rules, redis=self.redis)
        self.callbacks = Callbacks(self.ami, self.redis, self.current_rules, outcomes=self.outcomes)
        self.watchdog = OutcomeWatchdog(self.ami, self.redis, self.outcomes, self.states,
                                        lambda: self.current_menu().name, self.router.fallback_queue)
        self.revisits = ReturnVisits(self.ami, self.redis, self.tickets, self.current_rules, outcomes=self.outcomes,
                                     has_script=lambda: self.current_menu().revisit is not None)
        await self.ami.start()
        journal = s.unfinished_journal
        if journal is None and self.pbx is not None:
            journal = self.pbx.host_path(await asyncio.to_thread(self.pbx.instance_dir)) / "log" / UNFINISHED_FILE
        if journal is not None:
            self.unfinished = UnfinishedCalls(journal, self.outcomes, self.states, lambda: self.current_menu().name,
                                              self.router.fallback_queue)
            self._tasks.append(asyncio.create_task(self.unfinished.run(), name="unfinished-calls"))
        self._tasks.append(asyncio.create_task(self.revisits.run(), name="return-visits"))
        self._tasks.append(asyncio.create_task(run_recording_expiry(recordings.host_dir, s.recordings_keep_days),
                                               name="recording-expiry"))
        self._tasks.append(asyncio.create_task(self.watchdog.run(), name="outcome-reconciliation"))
        self._tasks.append(asyncio.create_task(self.speech.engine.preload(), name="speech-models"))
        self._tasks.append(asyncio.create_task(self.callbacks.run_retries(), name="callback-retries"))
        self._tasks.append(asyncio.create_task(self.ager.run(), name="priority-aging"))
        self._tasks.append(asyncio.create_task(self.live.run_refresher(), name="live-queue-refresh"))
        self._tasks.append(asyncio.create_task(self.live.run_mirror(), name="live-queue-mirror"))
        self._tasks.append(asyncio.create_task(self.states.run(), name="call-state-mirror"))
        self._tasks.append(asyncio.create_task(self.outcomes.run_journal_replayer(), name="outcome-journal"))

        self._web_runner = web.AppRunner(build_web_app(self))
        await self._web_runner.setup()
        try:
            await web.TCPSite(self._web_runner, s.web_host, s.web_port).start()
        except OSError as exc:
            raise PortInUse(f"the web cannot listen on {s.web_host}:{s.web_port} ({exc.strerror})") from None
        # Everything loaded so far (modules, menu, rules, models' wrappers) lives as long as the
        # process: out of the collector's sight, a full collection scans only what calls create.
        # Without it, full collections under load paused the event loop for 100-500 ms.
        gc.collect()
        gc.freeze()
        # From here on the collector runs on a clock, not on allocation counts (ivr/collector.py says why).
        self.collector = ClockedCollector()
        self._tasks.append(asyncio.create_task(self.collector.run(), name="garbage-collector"))
        log.info("hotline ready: FastAGI %s:%d, web http://%s:%d/; call engine %s",
                 s.agi_host, self.agi.port, s.web_host, s.web_port, native.status())

    async def reload(self) -> dict[str, object]:
        """Publish edited routing rules and menu without a restart and without dropping calls.

        Both files are validated first; on any error (ConfigError, with file:line:column) nothing
        changes. Then new calls get the new versions while calls in progress keep the menu they
        started with; queues.conf/queuerules.conf are rendered again and Asterisk reloads its
        queues (QueueReload keeps waiting callers and members), and agents are re-applied with the
        memberships the rules dropped removed.
        """
        async with self._reloading:
            return await self._reload()

    async def _reload(self) -> dict[str, object]:
        s = self.settings
        rules = load_rules(s.routing)
        menu = load_menu(s.menu, skills=rules.skills)
        if self.rules is not None and rules.queue_of(rules.fallback_skill) != self.rules.queue_of(
                self.rules.fallback_skill):
            # The dialplan's queue of last resort is fixed when Asterisk starts (HOTLINE_DEFAULT_QUEUE).
            raise ReloadRefused("the fallback skill's queue changed: that needs a restart")
        if s.build_prompts:
            await asyncio.to_thread(build_prompts, menu, s.built_prompts_dir)
        await asyncio.to_thread(write_asterisk_config, rules, s.state_dir / "asterisk")
        if self.pbx is not None:
            await self.pbx.refresh()
        queues_reloaded = False
        if self.ami is not None and self.ami.ready:
            try:
                await self.ami.queue_reload()
            except (AmiError, TimeoutError) as exc:
                raise ReloadRefused(f"Asterisk did not reload its queues: {exc}") from exc
            queues_reloaded = True
        # Asterisk has the new queues: from here on, new calls get the new menu and rules.
        self.rules, self.menu = rules, menu
        if self.live is not None:
            self.live.wrapup_seconds = rules.queue_settings.wrapup_seconds
            self.live.handle_times.default_seconds = rules.waiting.handle_seconds
        removed = applied = 0
        if self.agents is not None and queues_reloaded:
            removed = await self.agents.remove_stale()
            applied = await self.agents.apply()
        log.info("reloaded: menu %s, rules %s (%d skills)", menu.name, rules.name, len(rules.skills))
        return {"menu": menu.name, "rules": rules.name, "skills": len(rules.skills),
                "queues_reloaded": queues_reloaded, "memberships_applied": applied, "memberships_removed": removed}

    async def stop(self, *, stop_pbx: bool = True) -> None:
        if self.agi is not None:
            self.agi.refuse("hotline")
            await self.agi.drain(self.settings.drain_timeout, {"hotline"})
        log.info("stopping: IVR sessions drained")
        if self.ami is not None:
            if self.live is not None:
                self.live.going_stale()
            await self.ami.close()  # before Asterisk goes: its going is no reason to reconnect
        log.info("stopping: AMI closed")
        if self.pbx is not None and stop_pbx and self._owns_pbx:
            await self.pbx.stop(purge=self.settings.pbx_ephemeral)
            log.info("stopping: Asterisk stopped")
        if self.agi is not None:
            await self.agi.stop(drain_timeout=5.0)
        if self._web_runner is not None:
            self.live_feed.close()  # ends the wallboards' streams, which would hold the cleanup
            await self._web_runner.cleanup()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.states is not None:
            await self.states.flush(force=True)  # the last steps of calls still in progress, for the next controller
        if self.ager is not None:
            await self.ager.release()
        if self.speech is not None:
            self.speech.engine.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.local_redis is not None:
            await self.local_redis.stop()
