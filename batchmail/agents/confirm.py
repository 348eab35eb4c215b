"""Asking the person before anything is sent (`BATCHMAIL_MCP_CONFIRM=elicit`): the question put
through MCP elicitation, and what its answer allows.

The question is asked only after every other gate passed (token, allowlist, cap), and only an
explicit accept with `confirm` true lets the message leave. The values in the question come from
recipient data and from the agent's arguments: each is shown on a line of its own with control
characters removed, addresses without their display names, secret values redacted, so that data
cannot dress itself up as part of the question.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from mcp.server.mcpserver import (
    AcceptedElicitation,
    CancelledElicitation,
    DeclinedElicitation,
    Elicit,
)
from mcp.types import ClientCapabilities
from msgspec import Struct
from pydantic import BaseModel, Field

from batchmail import api
from batchmail.agents.policy import CONFIRM_ELICIT, ENV_CONFIRM, Policy
from batchmail.agents.results import ToolFailure
from batchmail.feedback.notifications import one_line

SAMPLE = 5  # addresses named in the question; the rest are counted
MAX_VALUE = 200  # characters of a subject or a name shown in the question

NOTHING_SENT = "nothing was sent and nothing counted against the cap"
UNABLE = (
    f"this server asks a person before anything is sent ({ENV_CONFIRM}={CONFIRM_ELICIT}) and "
    "this MCP client does not support elicitation, so it cannot ask; use a client that "
    f"supports MCP elicitation; {NOTHING_SENT}"
)


class Confirm(BaseModel):
    """The form the person answers: one boolean."""

    confirm: bool = Field(title="Send", description="true to send exactly these messages now")


class Unasked(Struct, frozen=True):
    """Why the person was not asked: the setting is off, a gate refused before the question,
    or the client cannot ask."""

    reason: Literal["off", "refused", "unable"]


class Outline(Struct, frozen=True):
    """What is about to be sent, as the person is shown it."""

    what: str  # "3 messages of the job 'reports'", "1 message"
    sender: str
    subject: str
    recipients: list[str]  # every envelope address: to, cc and bcc
    attachments: list[str]  # file names
    varies: bool = False  # the subject is the first message's; the others' may differ

    def question(self, redact: Callable[[str], str]) -> str:
        def shown(value: str) -> str:
            return one_line(redact(value), MAX_VALUE)

        count = len(self.recipients)
        sample = ", ".join(shown(address) for address in self.recipients[:SAMPLE])
        more = f" and {count - SAMPLE} more" if count > SAMPLE else ""
        names = ", ".join(shown(name) for name in self.attachments) or "none"
        lines = [
            f"Send {shown(self.what)}?",
            f"From: {shown(self.sender)}",
            f"Subject: {shown(self.subject)}"
            + (" (the first message's; each recipient's may differ)" if self.varies else ""),
            f"Recipients: {count}: {sample}{more}",
            f"Attachments: {names}",
        ]
        return "\n".join(lines)


def can_ask(capabilities: ClientCapabilities | None) -> bool:
    """Whether the client declared form elicitation (a bare `elicitation: {}` is form)."""
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def consent(answer: object, ask: bool) -> None:
    """Go ahead, or raise the one-line refusal that says what the person (or client) did."""
    if not ask:
        return
    if isinstance(answer, AcceptedElicitation):
        data = answer.data
        if isinstance(data, Confirm):
            if data.confirm:
                return
            raise ToolFailure(f"the person did not confirm the sending; {NOTHING_SENT}")
        if isinstance(data, Unasked) and data.reason == "unable":
            raise ToolFailure(UNABLE)
    if isinstance(answer, DeclinedElicitation):
        raise ToolFailure(f"the person declined the sending; {NOTHING_SENT}")
    if isinstance(answer, CancelledElicitation):
        raise ToolFailure(f"the person cancelled the question without answering; {NOTHING_SENT}")
    # The gates refused when the question was due but pass now: the inputs moved in between.
    raise ToolFailure(
        f"the inputs changed while the person was to be asked; call the tool again; {NOTHING_SENT}"
    )


def ask(
    policy: Policy, outline: Callable[[], Outline], capabilities: ClientCapabilities | None
) -> Elicit[Confirm] | Unasked:
    """The question to put to the person once the gates in `outline` pass, or why none is put."""
    if not policy.ask:
        return Unasked("off")
    try:
        shown = outline()
    except Exception:  # the tool runs the same gates and says why
        return Unasked("refused")
    if not can_ask(capabilities):
        return Unasked("unable")
    return Elicit(shown.question(policy.redactor.text), Confirm)


def run_outline(preview: api.JobPreview) -> Outline:
    """A job about to be sent: its first message stands for the others."""
    first = preview.messages[0] if preview.messages else None
    plural = "s" if preview.count != 1 else ""
    return Outline(
        what=f"{preview.count} message{plural} of the job {preview.job.name!r}",
        sender=preview.job.sender.shown,
        subject=first.subject if first is not None else "",
        recipients=[box.address for box in [*preview.mailboxes, *preview.copies]],
        attachments=[a.name for a in first.attachments] if first is not None else [],
        varies=preview.count > 1,
    )


def email_outline(message: api.OneMessage) -> Outline:
    return Outline(
        what="1 message",
        sender=message.sender.shown,
        subject=message.subject,
        recipients=[box.address for box in [message.to, *message.cc, *message.bcc]],
        attachments=[file.name for file in message.attachments],
    )
