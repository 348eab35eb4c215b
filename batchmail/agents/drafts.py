"""`save_draft`: the message `send_email` would send, behind the same gates (allowlist, cap,
fixed From, files inside the root), stored in a mailbox's drafts folder for a person to send."""

from __future__ import annotations

from typing import Any

from batchmail import api
from batchmail.agents.results import ToolFailure
from batchmail.agents.settings import fixed_sender
from batchmail.agents.tools import BatchmailTools, _attached_view, _mailboxes
from batchmail.errors import ConnectFailure, InvalidJobError
from batchmail.load.addresses import has_line_break

ENV_IMAP_URL = "BATCHMAIL_IMAP_URL"
ENV_IMAP_PASSWORD = "BATCHMAIL_IMAP_PASSWORD"  # noqa: S105 (a name, not a password)


class DraftTool:
    def __init__(self, tools: BatchmailTools):
        self.tools = tools
        # However short it is, the password is never shown nor put into a message.
        tools.policy.redactor.add(tools.environ.get(ENV_IMAP_PASSWORD))

    def save(
        self,
        to: str,
        subject: str,
        body: str,
        *,
        html: str | None = None,
        attachments: list[str] | None = None,
        cc: list[str] | None = None,
    ) -> dict[str, Any]:
        tools = self.tools
        if has_line_break(subject):
            raise ToolFailure("the subject contains a line break (CR/LF); refused")
        [recipient] = _mailboxes("to", [to])
        copies = _mailboxes("cc", cc or [])
        tools._check_allowed([recipient, *copies])
        mailbox, password = self._mailbox()
        sender = fixed_sender(tools.environ, "save_draft")
        files = tuple(tools._attachment(given) for given in attachments or [])
        message = api.OneMessage(sender, recipient, subject, body, html, files, copies)
        tools.policy.quota.reserve(1)
        try:
            saved = api.save_draft(message, mailbox, password)
        except (ConnectFailure, InvalidJobError):
            tools.policy.quota.release(1)  # not stored: no session, or no message
            raise
        return {
            "status": "saved",
            "folder": saved.folder,
            "uid": saved.uid,
            "from": sender.shown,
            "to": recipient.shown,
            "cc": [box.shown for box in copies],
            "subject": subject,
            "message_id": saved.message_id,
            "size": saved.size,
            "attachments": [_attached_view(a) for a in saved.attachments],
            "remaining_messages": tools.policy.quota.remaining,
        }

    def _mailbox(self) -> tuple[str, str]:
        environ = self.tools.environ
        url = environ.get(ENV_IMAP_URL, "").strip()
        if not url:
            raise ToolFailure(
                f"save_draft is not configured: {ENV_IMAP_URL} is not set "
                "(imaps://USER@HOST:PORT/Drafts)"
            )
        password = environ.get(ENV_IMAP_PASSWORD, "")
        if not password:
            raise ToolFailure(f"save_draft is not configured: {ENV_IMAP_PASSWORD} is not set")
        return url, password
