"""The programs the end-to-end tests run as children: ``selfology-counters watch`` and a real
``prometheus`` server, each on a free loopback port."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

CLI = str(Path(sys.executable).parent / "selfology-counters")


def prometheus_binary(name: str) -> tuple[str | None, pytest.MarkDecorator]:
    """The path of ``name`` (promtool, prometheus), and a mark that skips, saying why,
    where it is not installed."""
    path = shutil.which(name)
    reason = (
        f"{name} not found: install Debian's `prometheus` package (scripts/test.sh does when "
        "apt is available)"
    )
    return path, pytest.mark.skipif(path is None, reason=reason)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def http_get(url: str) -> bytes:
    return await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())


class WatchProcess:
    """``selfology-counters watch --port 0`` in a child process. Its log (stderr) is read all
    the time, so the child never blocks on a full pipe; :meth:`next` awaits a line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, dsn: str, *args: str) -> WatchProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("SELFOLOGY_DSN", "DATABASE_URL")}
        process = await asyncio.create_subprocess_exec(
            CLI,
            "watch",
            "--dsn",
            dsn,
            "--port",
            "0",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while raw := await self.process.stderr.readline():
            self.lines.append(raw.decode())
            self._queue.put_nowait(raw)
        self._queue.put_nowait(b"")

    async def next(self, event: str, **match: Any) -> dict[str, Any]:
        """The next log line of ``event`` whose fields include ``match``."""
        while True:
            raw = await asyncio.wait_for(self._queue.get(), timeout=30)
            assert raw, f"watch exited; its log: {self.lines}"
            line = json.loads(raw)
            if line["event"] == event and match.items() <= line.items():
                return dict(line)

    async def scrape(self, port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        body = await http_get(f"http://127.0.0.1:{port}/metrics")
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }

    async def stop(self) -> int:
        """SIGTERM, then its exit code (killed if it does not exit within 30 s)."""
        if self.process.returncode is None:
            self.process.terminate()
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout=30)
        except asyncio.TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        await self._reader
        return code


class PrometheusProcess:
    """Debian's ``prometheus`` with a config of the test's, its TSDB in a temporary folder,
    on a free loopback port; queried through its HTTP API."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @classmethod
    async def start(cls, binary: str, config: Path, workdir: Path) -> PrometheusProcess:
        port = free_port()
        log = workdir / "prometheus.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
                stdout=out,
                stderr=out,
            )
        server = cls(process, port, log)
        await server.until(server._ready, "prometheus to be ready")
        return server

    async def _ready(self) -> bool:
        assert self.process.returncode is None, self.log.read_text()
        try:
            return await http_get(f"http://127.0.0.1:{self.port}/-/ready") != b""
        except OSError:
            return False

    async def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        body = await http_get(f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}")
        reply = json.loads(body)
        assert reply["status"] == "success", reply
        return reply["data"]

    async def value(self, promql: str) -> float | None:
        """The single value of an instant query (None when it has no result)."""
        result = (await self.api("query", query=promql))["result"]
        return float(result[0]["value"][1]) if result else None

    async def until(self, condition: Any, what: str, timeout: float = 30) -> None:
        """Poll ``condition`` (an async callable) until it is true. Prometheus pushes nothing
        to wait on, so this is polled, at a fraction of the test config's intervals."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await condition():
            assert loop.time() < deadline, f"timed out waiting for {what}; {self.log.read_text()}"
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=30)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
