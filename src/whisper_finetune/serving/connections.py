"""Connections: how many, how long a client may take to send its request, and the fd limit.

uvicorn accepts every connection and waits as long as a client likes for its request
line and headers, so idle or half-sent connections pile up until the process runs out
of file descriptors; the accept loop then logs a traceback per retry. Here:

- :func:`guarded_protocol`: uvicorn's h11 protocol with a **header timeout** (a
  connection that has not sent a whole request head within ``header_timeout`` seconds,
  first or next on a kept-alive connection, is closed) and a **connection bound**: past
  ``max_connections``, the connection idle the longest (waiting for a request, not
  serving one) is closed to make room; with none idle the new one is closed.
- :func:`raise_fd_limit`: the soft ``RLIMIT_NOFILE`` raised to the hard limit at start.
- :class:`RateLimitedLog` and :func:`quiet_loop_errors`: a refused accept (out of file
  descriptors), and every other repeated event-loop error, is logged once per interval
  with a count of the repeats, never once per retry.

Bodies that trickle are timed out by :class:`~whisper_finetune.serving.guard.Guard`.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("whisper_finetune.serving")

LOG_INTERVAL_S = 60.0  # a repeated warning is logged at most once per interval
FD_RESERVE = 128  # descriptors kept for the model, uploads' temporary files, threads
_UNLIMITED_FDS = 1 << 16  # soft limit taken when the hard one is "unlimited"


class RateLimitedLog:
    """Log a message the first time, then once per ``interval`` with the count of repeats."""

    def __init__(self, interval: float = LOG_INTERVAL_S, clock=time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._repeats: dict[str, int] = {}

    def allow(self, key: str) -> str | None:
        """None when ``key`` was let through less than ``interval`` ago (counted); else
        the note to add to its message (empty, or how many repeats were held back)."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._repeats[key] = self._repeats.get(key, 0) + 1
            return None
        repeats = self._repeats.pop(key, 0)
        self._last[key] = now
        return (
            f" ({repeats} more like it in the last {now - last:.0f} s, not logged)"
            if repeats
            else ""
        )

    def __call__(self, key: str, level: int, message: str, *args, exc_info=None) -> bool:
        """Log (and return True) unless ``key`` was logged less than ``interval`` ago."""
        note = self.allow(key)
        if note is None:
            return False
        logger.log(level, message + note, *args, exc_info=exc_info)
        return True


class RepeatFilter(logging.Filter):
    """Lets a log message through once per interval (with :class:`RateLimitedLog`'s count);
    for loggers that are not ours (uvicorn's "Exceeded concurrency limit." per request)."""

    def __init__(self, log: RateLimitedLog) -> None:
        super().__init__()
        self.log = log

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.exc_info:
            return True  # a failure with a traceback is never dropped
        note = self.log.allow(f"{record.name}:{record.msg}")
        if note is None:
            return False
        record.msg = f"{record.msg}{note}"
        return True


def raise_fd_limit() -> int | None:
    """Raise the soft limit on open files to the hard one; the soft limit now (None: unknown)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_FDS if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            logger.debug("open-file limit raised from %d to %d", soft, target)
            soft = target
        except (ValueError, OSError) as exc:  # pragma: no cover - e.g. a sandbox
            logger.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    return None if soft == resource.RLIM_INFINITY else soft


def connection_bound(max_connections: int, fd_limit: int | None) -> int:
    """``max_connections``, lowered to fit the open-file limit with :data:`FD_RESERVE` spare."""
    if fd_limit is None or max_connections <= fd_limit - FD_RESERVE:
        return max_connections
    bound = max(16, fd_limit - FD_RESERVE)
    logger.warning(
        "--max_connections %d lowered to %d: the open-file limit is %d (raise it with ulimit -n)",
        max_connections,
        bound,
        fd_limit,
    )
    return bound


def quiet_loop_errors(loop, log: RateLimitedLog) -> None:
    """Log the event loop's errors once per interval each; out-of-descriptor accepts in a line."""

    def handler(loop, context) -> None:
        message = context.get("message", "event loop error")
        exc = context.get("exception")
        if "accept" in message and isinstance(exc, OSError):
            log(
                "accept",
                logging.ERROR,
                "refusing new connections: %s (errno %s); open connections are still served",
                exc.strerror or exc,
                exc.errno,
            )
            return
        key = f"{message}:{type(exc).__name__}"
        log(key, logging.ERROR, "%s: %r", message, exc, exc_info=exc)

    loop.set_exception_handler(handler)


def guarded_protocol(header_timeout: float, max_connections: int, log: RateLimitedLog):
    """uvicorn's h11 protocol with a header timeout and a bound on open connections.

    The connections waiting for a request head are kept in arrival order, so that the
    one idle longest is found in constant time: under a flood of new connections the
    accept path must stay cheap. Connections that never sent a request go first; a
    kept-alive one between two requests (a client that has been served) only when no
    other is idle, since its client may be sending its next request at that moment.
    """
    from collections import OrderedDict

    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    # connections waiting for a request head, oldest first: new ones, kept-alive ones
    fresh: OrderedDict = OrderedDict()
    kept: OrderedDict = OrderedDict()
    closed_by_us: set = set()  # closed here, not yet gone from uvicorn's connection set

    class GuardedH11Protocol(H11Protocol):
        _head_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._wait_for_head()
            if len(self.connections) - len(closed_by_us) > max_connections:
                self._make_room()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._head_timer is not None and self.conn.their_state is not h11.IDLE:
                self._stop_waiting()  # a whole request head arrived

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._wait_for_head()  # the next request's head has as long as the first's

        def connection_lost(self, exc) -> None:
            self._stop_waiting()
            closed_by_us.discard(self)
            super().connection_lost(exc)

        def _wait_for_head(self) -> None:
            self._stop_waiting()
            (fresh if self.cycle is None else kept)[self] = None  # cycle: a request was served
            self._head_timer = self.loop.call_later(header_timeout, self._head_timed_out)

        def _stop_waiting(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            fresh.pop(self, None)
            kept.pop(self, None)

        def _close(self) -> None:
            self._stop_waiting()
            closed_by_us.add(self)
            self.transport.close()

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                log(
                    "header_timeout",
                    logging.WARNING,
                    "closed a connection that sent no whole request within %g s",
                    header_timeout,
                )
                self._close()
            else:
                fresh.pop(self, None)
                kept.pop(self, None)

        def _make_room(self) -> None:
            for waiting in (fresh, kept):
                if self._evict_one(waiting):
                    return
            log(
                "refuse",
                logging.WARNING,
                "more than %d connections open (--max_connections), none idle: closing new ones",
                max_connections,
            )
            self._close()

        def _evict_one(self, waiting: OrderedDict) -> bool:
            while waiting:
                oldest = next(iter(waiting))
                if oldest is self:
                    return False
                if oldest.conn.their_state is h11.IDLE and not oldest.transport.is_closing():
                    log(
                        "evict",
                        logging.WARNING,
                        "more than %d connections open (--max_connections): closing the ones "
                        "idle longest",
                        max_connections,
                    )
                    oldest._close()
                    return True
                oldest._stop_waiting()
            return False

    return GuardedH11Protocol


def build_server(app, *, max_connections: int, header_timeout: float, log: RateLimitedLog):
    """A ``uvicorn.Server`` over ``app`` with the guarded protocol; raises the fd limit."""
    import uvicorn

    bound = connection_bound(max_connections, raise_fd_limit())
    repeats = RepeatFilter(log)
    for name in ("uvicorn.error", "uvicorn"):
        if not any(isinstance(f, RepeatFilter) for f in logging.getLogger(name).filters):
            logging.getLogger(name).addFilter(repeats)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        http=guarded_protocol(header_timeout, bound, log),
        # uvicorn's own backstop (HTTP 503); the protocol keeps connections at ``bound``
        limit_concurrency=bound + FD_RESERVE // 2,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,  # a request head over 16 KiB is a 400
    )
    return uvicorn.Server(config)


def run_server(server, sock, log: RateLimitedLog) -> None:
    """Serve on ``sock`` until interrupted, the event loop's errors logged by ``log``."""
    import asyncio

    async def main() -> None:
        quiet_loop_errors(asyncio.get_running_loop(), log)
        await server.serve(sockets=[sock])

    get_factory = getattr(server.config, "get_loop_factory", None)
    if hasattr(asyncio, "Runner") and get_factory is not None:
        with asyncio.Runner(loop_factory=get_factory()) as runner:
            runner.run(main())
    else:  # pragma: no cover - Python 3.10 or an older uvicorn
        asyncio.run(main())
