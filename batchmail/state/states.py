"""The states a recipient's message goes through, and the status a run ends with.

Their values are what the journal stores and what the report and the event log show: they never
change, so that journals and reports of earlier versions read the same.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryState(StrEnum):
    """A recipient's message: `pending` until the server's reply makes it one of the others."""

    PENDING = "pending"  # not tried yet, or in flight (the reply was not recorded)
    SENT = "sent"  # the server accepted it
    FAILED = "failed"  # refused permanently (5xx)
    DEFERRED = "deferred"  # refused for now (4xx, connection lost, quota): sent again later
    UNKNOWN = "unknown"  # no reply after the data went out: it may have been delivered
    PREVIEWED = "previewed"  # a dry run wrote it to a file
    SKIPPED = "skipped"  # only in a report: delivered by an earlier invocation of the run
    SUPPRESSED = "suppressed"  # listed in a suppression file when the send loop took it: not sent


# In the report's summary, in this order.
REPORTED = (
    DeliveryState.SENT,
    DeliveryState.PREVIEWED,
    DeliveryState.FAILED,
    DeliveryState.DEFERRED,
    DeliveryState.UNKNOWN,
    DeliveryState.PENDING,
    DeliveryState.SKIPPED,
    DeliveryState.SUPPRESSED,
)
DELIVERED = frozenset({DeliveryState.SENT, DeliveryState.PREVIEWED})
# Tried in this invocation, whatever the reply.
TRIED = frozenset(
    {
        DeliveryState.SENT,
        DeliveryState.PREVIEWED,
        DeliveryState.FAILED,
        DeliveryState.DEFERRED,
        DeliveryState.UNKNOWN,
    }
)
# Not delivered, now or earlier: the recipients a next job would need.
UNDELIVERED = frozenset(
    {DeliveryState.FAILED, DeliveryState.DEFERRED, DeliveryState.UNKNOWN, DeliveryState.PENDING}
)


class RunStatus(StrEnum):
    """How an invocation of a run ended, as the journal and the report record it."""

    COMPLETED = "completed"  # every recipient delivered
    INCOMPLETE = "incomplete"  # some failed, were deferred or are unknown
    INTERRUPTED = "interrupted"
    QUOTA = "quota"  # a per-hour or per-day limit reached
    CONNECTION_FAILED = "connection_failed"  # no session could be opened: nothing was sent
    SENDER_REFUSED = "sender_refused"  # the server refused the sender again and again
    INVALID = "invalid"  # the job did not validate: nothing was sent
    ERROR = "error"  # stopped on an error (a full disk, a bug)
