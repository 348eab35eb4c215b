"""Which message of a job a notification is about: by the original's Message-ID, which batchmail
makes `<RUN_ID.SEQ@domain>` (`Composer.message_id`), else by the VERP address it was delivered to,
each recipient's rendered envelope sender (`Composer.addressing`)."""

from __future__ import annotations

import re

from msgspec import Struct

from batchmail.build.compose import Composer
from batchmail.errors import InvalidJobError, Problem
from batchmail.feedback.notifications import Finding, Notification
from batchmail.load.addresses import AddressError, Mailbox, mailbox
from batchmail.state.feedback import Delivered, FeedbackBook

_OUR_ID = re.compile(r"<(?P<run>[0-9]{8}T[0-9]{6}Z-[0-9a-f]+)\.(?P<seq>[0-9]{1,9})@[^<>@\s]+>")


class Matched(Struct, frozen=True):
    delivered: Delivered
    by: str  # "Message-ID" or "VERP"


class Matcher:
    def __init__(self, composer: Composer, book: FeedbackBook):
        self.composer = composer
        self.book = book
        self._verp: dict[str, str] | None = None  # envelope sender key -> recipient's email

    def match(self, notification: Notification) -> Matched | None:
        for message_id in notification.message_ids:
            delivered = self._by_message_id(message_id)
            if delivered is not None:
                return Matched(delivered, "Message-ID")
        for address in notification.addressed_to:
            delivered = self._by_verp(address)
            if delivered is not None:
                return Matched(delivered, "VERP")
        return None

    def _by_message_id(self, message_id: str) -> Delivered | None:
        found = _OUR_ID.fullmatch(message_id)
        if found is None:
            return None
        run_id, seq = found.group("run"), int(found.group("seq"))
        if self.composer.message_id(run_id, seq).lower() != message_id.lower():
            return None  # another sender's domain
        return self.book.delivered(run_id, seq)

    def _by_verp(self, address: str) -> Delivered | None:
        if self.composer.job.fields.envelope_from is None:
            return None
        key = _key(address)
        email = self._verp_addresses().get(key) if key else None
        return self.book.latest_to(email) if email else None

    def _verp_addresses(self) -> dict[str, str]:
        """Each recipient's envelope sender, rendered once; a sender shared by several
        recipients names none of them."""
        if self._verp is None:
            found: dict[str, str | None] = {}
            problems: list[Problem] = []
            for recipient in self.composer.recipients(problems):
                try:
                    sender = self.composer.addressing(recipient).sender.person_key
                except InvalidJobError:
                    continue
                found[sender] = None if sender in found else recipient.email
            self._verp = {key: email for key, email in found.items() if email is not None}
        return self._verp


def named_address(finding: Finding, delivered: Delivered) -> Mailbox | None:
    """The address a finding is about: the message's recipient when the notification names it
    (or names nobody), else the address it names, a copy (cc, bcc) of that message."""
    primary = _mailbox(delivered.email)
    named = [_mailbox(a) for a in (finding.original_recipient, finding.final_recipient) if a]
    # Case-folded: receivers often write the address in lower case (see Mailbox.person_key).
    keys = {m.person_key for m in named if m is not None}
    if primary is not None and (primary.person_key in keys or not keys):
        return primary
    final = _mailbox(finding.final_recipient) if finding.final_recipient else None
    return final or primary


def _mailbox(address: str | None) -> Mailbox | None:
    if not address:
        return None
    try:
        return mailbox(address)
    except AddressError:
        return None


def _key(address: str) -> str | None:
    found = _mailbox(address)
    return found.person_key if found else None
