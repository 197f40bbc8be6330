"""Running the server: one process, or several worker processes sharing the port.

One Python process uses one core. With ``TELEMED_WORKERS`` > 1 the supervisor starts that many workers, each
listening on the same port (``SO_REUSEPORT``: the kernel spreads connections over them). What must stay in one
place does:

* video calls: worker 0 hosts every call room and media relay; the other workers forward the signaling
  WebSocket to it over a Unix socket (``signaling.forward``), and the media itself flows between the browser
  and worker 0 directly;
* background jobs (reminders, retries, expiry) run in worker 0 only;
* live-page events, sign-out evictions and sign-in rate limits cross workers through Redis
  (``TELEMED_REDIS_URL`` is required);
* metrics: each worker also listens on a Unix socket of its own, through which whichever worker answers
  ``/metrics`` gathers every worker's figures (``clinic.web.health``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from clinic.config import Settings

log = logging.getLogger("telemed")

#: ``Services.extra`` key: the Unix socket of the worker hosting call rooms, set in the other workers.
SIGNAL_OWNER = "signal_owner_socket"
#: ``Services.extra`` key: this worker's number, when there are several (reported by /healthz).
WORKER_INDEX = "worker_index"


def event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:  # not built for this platform: the standard loop works, only slower
            log.warning("uvloop is not installed; using the asyncio event loop")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def owner_socket(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "run" / "signal.sock"


def worker_socket(settings: Settings, index: int) -> Path:
    """Where worker ``index`` listens for its siblings (metrics); the folder is the data dir's, not public."""
    return settings.data_dir.resolve() / "run" / f"worker-{index}.sock"


def run_worker(settings: Settings, index: int | None) -> None:
    """Serve in this process. ``index`` is None for a single-process server, else this worker's number."""
    from aiohttp import web

    from clinic.web.app import create_app

    overrides: dict[str, object] = {}
    paths: list[str] | None = None
    if index is not None:
        overrides[WORKER_INDEX] = index
        own = worker_socket(settings, index)
        own.parent.mkdir(parents=True, exist_ok=True)
        own.unlink(missing_ok=True)
        paths = [str(own)]
        sock = owner_socket(settings)
        if index == 0:
            sock.unlink(missing_ok=True)
            paths.append(str(sock))
        else:
            overrides[SIGNAL_OWNER] = str(sock)
            settings = settings.model_copy(update={"run_jobs": False})
    app = create_app(settings, overrides=overrides)
    from clinic import icd10

    icd10.warm()  # before listening: built on first use, it would hold up the event loop for a second
    web.run_app(app, host=settings.host, port=settings.port, path=paths, reuse_port=index is not None or None,
                print=None, access_log=None, loop=event_loop(settings.event_loop))


def supervise(settings: Settings, argv_tail: list[str]) -> int:
    """Start ``settings.workers`` worker processes and stay until told to stop or one of them dies."""
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for i in range(settings.workers):
        # Our own interpreter and module, with arguments this function builds: no untrusted input.
        procs.append(subprocess.Popen([sys.executable, "-m", "clinic.cli", "serve",  # noqa: S603
                                       "--worker-index", str(i), *argv_tail]))
        if i == 0:
            # Call rooms live in worker 0: let it bind its socket before others forward to it.
            _wait_for(owner_socket(settings), procs[0])
    code = 0
    while True:
        time.sleep(0.2)
        # Checked after the sleep: a stop signal (systemd signals every process of the unit at once) is seen
        # before the workers it also ended are taken for crashed ones.
        if stopping:
            break
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            log.error("worker %s exited with %s; stopping the others", procs.index(dead[0]), dead[0].returncode)
            code = 1
            break
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
    return code


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not path.exists():
        time.sleep(0.05)
