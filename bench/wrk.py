"""Concurrent HTTP clients for the API benchmarks, played by ``wrk`` (apt: wrk, installed by
``scripts/install-deps.sh --bench``).

wrk is written in C: its 32 connections take a few percent of a core, so on a two-core machine the
server being measured keeps both cores (Python clients, even in four processes, took most of them and the
figures measured the clients). A Lua script sets the token (not on the command line, where ``ps`` shows
it), an optional think time between a client's requests (wrk's ``delay()``, random around the given
mean), and prints the summary as one machine-readable line.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass

SCRIPT = """
wrk.headers["X-Auth-Token"] = "{token}"
{delay}
function done(summary, latency, requests)
  local e = summary.errors
  local bad = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("ATOLL %d %d %d %.3f %.3f %.3f\\n", summary.requests, summary.duration, bad,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""


@dataclass(frozen=True)
class Load:
    requests: int
    seconds: float
    errors: int  # connect/read/write errors, timeouts and non-2xx/3xx answers
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, token: str, *, clients: int, seconds: int, think_ms: int = 0, threads: int = 2) -> Load:
    """``clients`` keep-alive connections sending GET ``url`` for ``seconds``; each waits ``think_ms``
    after an answer before its next request (0: closed loop, as fast as the server answers)."""
    # Each client's think time is drawn between half and one and a half times think_ms, seeded per
    # connection: clients that all waited exactly think_ms would stay in step and arrive as one burst.
    delay = (
        f"math.randomseed(os.time() + math.floor(os.clock() * 1e6))\n"
        f"function delay() return math.random({think_ms // 2}, {think_ms * 3 // 2}) end"
        if think_ms
        else ""
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(SCRIPT.format(token=token, delay=delay))
        script.flush()
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{clients}",
                f"-d{seconds}s",
                "--timeout",
                "30s",
                "-s",
                script.name,
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    line = next(x for x in out.splitlines() if x.startswith("ATOLL "))
    n, usec, bad, p50, p99, top = line.split()[1:]
    return Load(int(n), int(usec) / 1e6, int(bad), float(p50), float(p99), float(top))
