"""Reconnecting: which failures are worth another try, and how long to wait before it.

A reconnecting client decides two things after every connection attempt that failed and
every session that ended: whether to try again, and when. Both are decided here, with no
clock and no random source of their own: the time and a random value in [0, 1) are
arguments, so that the schedule is tested with plain numbers, and a driver supplies its
loop's clock and `random.random`.

Every end is an exception: a failed attempt raises its own (`OSError`, `TimeoutError`,
`HandshakeRejected`, ...), and a session that ended is `SessionClosed(code, reason)`.
`should_retry` sorts them: what may heal by itself (the server restarting, the network
coming back, an overloaded server asking to come back later) is retried; what would only
fail the same way again (a policy violation, a 4xx refusal, a certificate that does not
verify, a bad URL, a protocol error between the two peers) ends the reconnecting loop with
that exception, for the caller to see.
"""

from __future__ import annotations

import attrs

from ._errors import HandshakeError, HandshakeRejected, SessionClosed

__all__ = ["RETRIED_CLOSE_CODES", "RETRIED_STATUS_CODES", "Backoff", "Reconnector", "should_retry"]

#: Close codes after which a client reconnects. The rest end the loop: 1002 (protocol
#: error), 1003 (unsupported data), 1007 (invalid data), 1008 (policy violation), 1009
#: (message too big), 1010 (missing extension) and 1015 (TLS) would happen again on the
#: next session, and application codes (3000-4999) mean what the application says: it
#: decides itself, by catching the `SessionClosed` and looping again.
RETRIED_CLOSE_CODES = frozenset(
    {
        1000,  # normal closure: the server ended this session, not the service
        1001,  # going away: a server shutting down or restarting
        1005,  # no status: how session-rs closes, normally
        1006,  # abnormal: the connection was lost
        1011,  # internal error: a server fault, maybe passing
        1012,  # service restart
        1013,  # try again later
        1014,  # bad gateway: a proxy could not reach the server
    }
)

#: HTTP statuses of a refused upgrade after which a client tries again: 408 (request
#: timeout), 429 (too many requests) and every 5xx (the server or a proxy in front of it
#: is failing, or restarting). Other refusals (401, 403, 404, a redirect, a 200 from a
#: plain HTTP server) would be refused again.
RETRIED_STATUS_CODES = frozenset({408, 429, *range(500, 600)})


def should_retry(failure: BaseException) -> bool:
    """Whether a reconnecting client tries again after `failure`.

    Args:
        failure: what ended the last attempt: the exception connecting raised, or
            `SessionClosed(code, reason)` for a session that ended.

    Returns:
        True for a session closed with one of `RETRIED_CLOSE_CODES` (1006: the
        connection was lost), an upgrade refused with one of `RETRIED_STATUS_CODES`,
        any other failed handshake (the connection ended during it, it timed out), a
        timeout, and an `OSError` (refused, reset, unreachable, name resolution), except a
        TLS certificate that failed verification. False for everything else: a bad URL or
        a bad argument (`LocalProtocolError`, `ValueError`), a 4xx refusal, and any
        exception that is not about the connection.
    """
    if isinstance(failure, SessionClosed):
        return failure.code in RETRIED_CLOSE_CODES
    if isinstance(failure, HandshakeRejected):
        return failure.status_code in RETRIED_STATUS_CODES
    if isinstance(failure, HandshakeError | TimeoutError):
        return True
    if isinstance(failure, OSError):
        # ssl.SSLCertVerificationError, known by name (the engine imports no ssl): a
        # certificate does not start verifying by itself.
        return not any(
            cls.__name__ == "SSLCertVerificationError" and cls.__module__ == "ssl"
            for cls in type(failure).__mro__
        )
    return False


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:  # NaN too
        raise ValueError(f"{attribute.name} must be 0 or more, not {value!r}")


@attrs.frozen(kw_only=True)
class Backoff:
    """How long a reconnecting client waits before each new attempt.

    Exponential with jitter and a cap: the n-th attempt in a row (from 0) waits
    `min(max_delay, initial * factor ** n)`, less a random part of at most `jitter` of it,
    so that clients dropped together by a server restart do not all come back at the same
    instant. A session that stayed open for `reset_after` seconds starts the count again.
    """

    initial: float = attrs.field(default=1.0, validator=_non_negative)
    "Seconds before the first attempt after a session ended or a connection failed."
    factor: float = attrs.field(default=2.0, validator=_non_negative)
    "How much each attempt in a row multiplies the delay (1: a constant delay)."
    max_delay: float = attrs.field(default=30.0, validator=_non_negative)
    "The longest delay, in seconds."
    jitter: float = attrs.field(default=0.5, validator=[_non_negative, attrs.validators.le(1.0)])
    "The part of each delay drawn at random, from 0 (none) to 1 (anywhere in [0, delay])."
    reset_after: float = attrs.field(default=30.0, validator=_non_negative)
    "Seconds a session must stay open for the next attempt to start from `initial` again."
    max_retries: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    "Attempts in a row (without a session lasting `reset_after`) before giving up; `None`: no limit."

    def delay(self, attempt: int, random: float) -> float:
        """Seconds to wait before attempt number `attempt` of a row (0 for the first).

        Args:
            attempt: how many attempts in a row came before this one.
            random: a value in [0, 1), such as `random.random()`: 0 gives the full delay,
                values towards 1 take off up to `jitter` of it.
        """
        try:
            full = min(self.max_delay, self.initial * self.factor**attempt)
        except OverflowError:  # a long enough outage: far past the cap
            full = self.max_delay if self.initial > 0 else 0.0
        return full * (1.0 - self.jitter * random)


class Reconnector:
    """The state of a reconnecting client, with no I/O: what to do after each end.

    A driver tells it when a session opened (`opened`) and asks it, after every failed
    attempt or ended session, for the delay before the next attempt (`next_delay`), which
    is `None` when the loop must end (the failure is not to be retried, or `max_retries`
    is reached) and the failure be raised to the caller.
    """

    def __init__(self, backoff: Backoff | None = None) -> None:
        """Start with no attempt made, on `backoff` (default `Backoff()`)."""
        self.backoff = backoff if backoff is not None else Backoff()
        "The schedule."
        self.attempts = 0
        "Attempts in a row that did not give a session lasting `reset_after`."
        self._opened_at: float | None = None

    def opened(self, now: float) -> None:
        """A session opened at `now` (seconds on the driver's monotonic clock)."""
        self._opened_at = now

    def next_delay(self, failure: BaseException, *, now: float, random: float) -> float | None:
        """The seconds to wait before the next attempt, or `None` to stop and raise `failure`.

        Args:
            failure: what ended the attempt: its exception, or `SessionClosed(code,
                reason)` for a session that ended (see `should_retry`).
            now: the driver's clock.
            random: a value in [0, 1) (`random.random()`), for the jitter.
        """
        opened_at, self._opened_at = self._opened_at, None
        if opened_at is not None and now - opened_at >= self.backoff.reset_after:
            self.attempts = 0  # the last session lived: the outage starts now
        if not should_retry(failure):
            return None
        limit = self.backoff.max_retries
        if limit is not None and self.attempts >= limit:
            return None
        delay = self.backoff.delay(self.attempts, random)
        self.attempts += 1
        return delay
