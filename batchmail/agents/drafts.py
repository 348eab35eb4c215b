"""`save_draft`: the message `send_email` would send, behind the same gates (allowlist, cap,
fixed From, files inside the root), stored in a mailbox's drafts folder for a person to send."""

from __future__ import annotations

from typing import Any

from batchmail import api
from batchmail.agents.results import ToolFailure
from batchmail.agents.settings import fixed_sender
from batchmail.agents.tools import BatchmailTools, EmailArguments, attached_view
from batchmail.errors import ConnectFailure, InvalidJobError

ENV_IMAP_URL = "BATCHMAIL_IMAP_URL"
ENV_IMAP_PASSWORD = "BATCHMAIL_IMAP_PASSWORD"  # noqa: S105 (a name, not a password)


class DraftTool:
    def __init__(self, tools: BatchmailTools):
        self.tools = tools
        # However short it is, the password is never shown nor put into a message.
        tools.policy.redactor.add(tools.environ.get(ENV_IMAP_PASSWORD))

    def save(self, given: EmailArguments) -> dict[str, Any]:
        tools = self.tools
        to, cc, _ = tools.addressed(given)  # no bcc: a draft keeps its recipients in its headers
        mailbox, password = self._mailbox()
        sender = fixed_sender(tools.environ, "save_draft")
        files = tools.attached(given)
        message = api.OneMessage(sender, to, given.subject, given.body, given.html, files, cc)
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
            "to": to.shown,
            "cc": [box.shown for box in cc],
            "subject": given.subject,
            "message_id": saved.message_id,
            "size": saved.size,
            "attachments": [attached_view(a) for a in saved.attachments],
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
