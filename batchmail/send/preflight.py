"""`batchmail check JOB`: validate the job as `validate` does, then probe its SMTP server as a
run would connect to it, sending no message. DNS checks (SPF, DMARC, DKIM key): not yet."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from batchmail.build.compose import Built, Composer, validate
from batchmail.load.job import load_job
from batchmail.load.recipients import Warn
from batchmail.transport.oauth2 import credentials_for
from batchmail.transport.probe import Check, JobNeeds, probe
from batchmail.transport.smtp import SmtpTransport


class _Needs:
    """Collects what the messages of the validation pass ask of the server."""

    def __init__(self, sender_smtputf8: bool) -> None:
        self.largest = 0
        self.smtputf8 = sender_smtputf8
        self.eight_bit = False

    def add(self, built: Built) -> None:
        self.largest = max(self.largest, built.size)
        self.smtputf8 = self.smtputf8 or built.recipient.mailbox.smtputf8
        self.eight_bit = self.eight_bit or not built.data.isascii()

    def result(self) -> JobNeeds:
        return JobNeeds(self.largest, self.smtputf8, self.eight_bit)


def check_job(path: Path, environ: Mapping[str, str], warn: Warn) -> list[Check]:
    """The checks, each ok / warn / fail; a job error raises InvalidJobError (exit 2)."""
    job = load_job(path, environ)
    needs = _Needs(job.sender.smtputf8)
    validate(Composer(job, warn), needs.add)
    credentials = credentials_for(job.smtp, environ)
    if credentials is not None:
        credentials.prepare()
    return probe(SmtpTransport(job.smtp, credentials), needs.result())
