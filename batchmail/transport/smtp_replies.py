"""An SMTP envelope's replies (RFC 5321 3.3): MAIL's, each RCPT's and DATA's, and what they
decide: whether the message goes, and which copies of it the server refused."""

from __future__ import annotations

from msgspec import Struct

from batchmail.transport.contract import Refusal, Route

Reply = tuple[int, bytes]
ACCEPTED = (250, 251)


class EnvelopeReplies(Struct, frozen=True):
    """An envelope's replies, as far as they came: MAIL's, each RCPT's, DATA's."""

    route: Route
    mail: Reply
    rcpts: tuple[Reply, ...]
    data: Reply | None

    @classmethod
    def of(cls, route: Route, replies: tuple[Reply, ...]) -> EnvelopeReplies:
        count = len(route.recipients)
        data = replies[count + 1] if len(replies) > count + 1 else None
        return cls(route, replies[0], replies[1 : count + 1], data)

    @property
    def last(self) -> Reply:
        return self.rcpts[-1] if self.rcpts else self.mail

    def accepted(self) -> bool:
        """Whether the server accepted any RCPT."""
        return any(reply[0] in ACCEPTED for reply in self.rcpts)

    def goes(self) -> bool:
        """Whether the message goes: the sender accepted, and the primary recipient (of a
        copies-only route: any copy)."""
        if self.mail[0] != 250 or not self.rcpts:
            return False
        if self.route.copies_only:
            return self.accepted()
        return self.rcpts[0][0] in ACCEPTED

    def deciding(self) -> Reply:
        """The reply that keeps the message from going: the primary's refusal; of a copies-only
        route, a copy's temporary refusal if any (it may still go), else the first."""
        if not self.route.copies_only:
            return self.rcpts[0] if self.rcpts else self.mail
        temporary = [reply for reply in self.rcpts if 400 <= reply[0] < 500]
        return (temporary or list(self.rcpts) or [self.mail])[0]

    def refused(self) -> tuple[Refusal, ...]:
        """The copies the server refused, with its reply to each."""
        route = self.route
        if not route.copies:
            return ()
        copies = self.rcpts if route.copies_only else self.rcpts[1:]
        return tuple(
            Refusal(address, code, reply_text(text))
            for address, (code, text) in zip(route.copies, copies, strict=False)
            if code not in ACCEPTED
        )

    def stops(self) -> bool:
        """Without pipelining, whether the next command would be in vain: the sender or the
        primary recipient refused, or every copy of a copies-only route."""
        if self.mail[0] != 250:
            return True
        if not self.route.copies_only:
            return bool(self.rcpts) and self.rcpts[0][0] not in ACCEPTED
        return len(self.rcpts) == len(self.route.copies) and not self.accepted()


def reply_text(reply: bytes | str) -> str:
    """A reply's text as one line."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())
