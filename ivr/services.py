"""The local services the hotline starts for itself: Redis and Asterisk (from the cached chroot).

Used by ``hotline serve`` with its embedded defaults and by the end-to-end tests. In production
(docker-compose, or an existing PBX) both are turned off with HOTLINE_LOCAL_PBX/HOTLINE_LOCAL_REDIS.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from redis import __version__ as REDIS_PY_VERSION
from redis.asyncio import BlockingConnectionPool, Redis
from redis.driver_info import DriverInfo

from ivr.config import REPO_ROOT

log = logging.getLogger(__name__)

PBX_SCRIPT = REPO_ROOT / "asterisk" / "hotline-pbx"


class ServiceError(Exception):
    pass


class PortInUse(ServiceError):
    pass


class LocalRedis:
    """A private redis-server with AOF on, in a folder of its own."""

    def __init__(self, port: int, data_dir: Path) -> None:
        self.port = port
        self.data_dir = data_dir
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, timeout: float = 10.0) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise ServiceError("redis-server is not installed (run `make setup`)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        client = Redis.from_url(self.url)
        try:
            if await client.ping():
                log.info("redis already running on port %d; using it", self.port)
                return
        except Exception:
            pass
        finally:
            await client.aclose()
        # A session of its own: Ctrl-C on `hotline serve` must not kill Redis before the
        # outcomes of calls being cut off are written; stop() ends it last.
        arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                     "--appendonly", "yes", "--save", "", "--protected-mode", "yes"]
        self._process = await asyncio.create_subprocess_exec(
            server, *arguments, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        client = Redis.from_url(self.url)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        if await client.ping():
                            return
                    except Exception:
                        if self._process.returncode is not None:
                            raise ServiceError("redis-server exited at start") from None
                        await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                async with asyncio.timeout(5):
                    await self._process.wait()
            except TimeoutError:
                self._process.kill()
        self._process = None


class LocalPbx:
    """An Asterisk instance run by asterisk/hotline-pbx from the cached Debian sid chroot."""

    def __init__(
        self,
        name: str,
        *,
        ami_port: int,
        ami_user: str,
        ami_secret: str,
        agi_host: str,
        agi_port: int,
        sip_port: int,
        prompts_dir: Path | None,
        generated_conf: Path | None = None,
        default_queue: str = "hotline-fallback",
    ) -> None:
        self.name = name
        self._env = {
            **os.environ,
            "HOTLINE_AMI_PORT": str(ami_port),
            "HOTLINE_AMI_USER": ami_user,
            "HOTLINE_AMI_SECRET": ami_secret,
            "HOTLINE_AGI_HOST": agi_host,
            "HOTLINE_AGI_PORT": str(agi_port),
            "HOTLINE_SIP_PORT": str(sip_port),
        }
        if prompts_dir is not None:
            self._env["HOTLINE_PROMPTS_DIR"] = str(prompts_dir)
        if generated_conf is not None:
            self._env["HOTLINE_GENERATED_CONF"] = str(generated_conf)
        self._env["HOTLINE_DEFAULT_QUEUE"] = default_queue

    def _run(self, *args: str, timeout: float = 600) -> str:
        result = subprocess.run(
            [str(PBX_SCRIPT), *args], env=self._env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise ServiceError(f"hotline-pbx {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def is_running(self) -> bool:
        result = subprocess.run(
            [str(PBX_SCRIPT), "status", self.name], env=self._env, capture_output=True, timeout=30, check=False
        )
        return result.returncode == 0

    async def start(self) -> bool:
        """Start the instance; False if it was already running (then it is not ours to stop)."""
        if await asyncio.to_thread(self.is_running):
            return False
        await asyncio.to_thread(self._run, "start", self.name)
        return True

    async def stop(self, *, purge: bool = False) -> None:
        """Stop the instance; ``purge`` also deletes its folder (throwaway instances)."""
        await asyncio.to_thread(self._run, "purge" if purge else "stop", self.name, timeout=60)

    async def refresh(self) -> None:
        """Render the instance's configuration and prompts again (for a reload while running)."""
        await asyncio.to_thread(self._run, "render", self.name, timeout=120)

    def instance_dir(self) -> str:
        return self._run("dir", self.name).strip()

    def host_path(self, asterisk_path: str) -> Path:
        """Where a path inside the chroot lies on this machine."""
        return Path(self._run("root").strip() + asterisk_path)

    async def rx(self, command: str) -> str:
        return await asyncio.to_thread(self._run, "rx", self.name, command, timeout=30)


def local_admin_token(state_dir: Path) -> str:
    """The token that admin HTTP actions (publishing a reload) need: generated once, kept private
    in the state folder, where `hotline reload` on the same machine reads it."""
    return _local_secret(state_dir / "admin-token")


def local_ami_secret(state_dir: Path) -> str:
    """The AMI secret of the local PBX: generated once, kept private in the state folder."""
    return _local_secret(state_dir / "ami-secret")


def _local_secret(path: Path) -> str:
    state_dir = path.parent
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(secret)
    return secret


def redis_client(url: str, max_connections: int = 64) -> Redis:
    """The controller's Redis client. A blocking pool: past ``max_connections`` a call waits its
    turn for a connection (Redis answers in well under a millisecond) instead of failing;
    redis-py's default pool raises "Too many connections" at 100 calls in flight (found by the
    load test).

    The driver info is given once: left out, redis-py reads its own version from the package
    metadata for every new connection (1-2 ms each), which held the load test's burst back."""
    return Redis(connection_pool=BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=2.0, socket_connect_timeout=1.0, socket_timeout=2.0,
        driver_info=DriverInfo(name="redis-py", lib_version=REDIS_PY_VERSION)))

