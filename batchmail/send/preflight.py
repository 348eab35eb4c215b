"""`batchmail check JOB`: validate the job as `validate` does, probe its SMTP server as a run
would connect to it, sending no message, then look up the sender domain's DNS records."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from batchmail.build.compose import Built, Composer, validate
from batchmail.load.addresses import Mailbox
from batchmail.load.job import load_job
from batchmail.load.recipients import Warn
from batchmail.send.dns_checks import dns_checks
from batchmail.transport.contract import Route
from batchmail.transport.dns_lookup import Lookups, resolver_address
from batchmail.transport.oauth2 import credentials_for
from batchmail.transport.probe import Check, JobNeeds, probe
from batchmail.transport.smtp import SmtpTransport


class _Needs:
    """Collects what the messages of the validation pass ask of the server."""

    def __init__(self, sender: Mailbox) -> None:
        self.sender = sender
        self.largest = 0
        self.smtputf8 = False
        self.eight_bit = False

    def add(self, built: Built) -> None:
        self.largest = max(self.largest, built.size)
        self.smtputf8 = self.smtputf8 or self._route(built).smtputf8
        self.eight_bit = self.eight_bit or not built.data.isascii()

    def _route(self, built: Built) -> Route:
        """The envelope a run would send: its sender, the recipient and the copies."""
        fields, mailbox = built.fields, built.recipient.mailbox
        sender = fields.envelope_from or self.sender
        return Route.between(built.recipient.seq, sender, mailbox, fields.copies(mailbox))

    def result(self) -> JobNeeds:
        return JobNeeds(self.largest, self.smtputf8, self.eight_bit)


def check_job(
    path: Path, environ: Mapping[str, str], warn: Warn, dns: str | None = None
) -> list[Check]:
    """The checks, each ok / warn / fail; a job error or a bad `dns` (HOST[:PORT]) raises
    InvalidJobError (exit 2) before anything is asked. `dns` None: the system resolver."""
    address = resolver_address(dns) if dns is not None else None
    job = load_job(path, environ)
    needs = _Needs(job.sender)
    validate(Composer(job, warn), needs.add)
    credentials = credentials_for(job.smtp, environ)
    if credentials is not None:
        credentials.prepare()
    smtp = probe(SmtpTransport(job.smtp, credentials), needs.result())
    return smtp + dns_checks(job, Lookups(address))
