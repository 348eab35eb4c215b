"""`smtp.provider`: each provider's documented submission settings (host, port, security),
filled in where the job leaves them out; keys the job gives win."""

from __future__ import annotations

import difflib
from typing import Any

from msgspec import Struct

from batchmail.errors import invalid
from batchmail.load.settings import DEFAULT_PORTS
from batchmail.load.yaml_file import Located


class Preset(Struct, frozen=True):
    host: str
    port: int
    security: str


# The SES endpoint is per region: email-smtp.REGION.amazonaws.com.
SES = "ses"

PRESETS: dict[str, Preset] = {
    "gmail": Preset("smtp.gmail.com", 587, "starttls"),
    "outlook": Preset("smtp-mail.outlook.com", 587, "starttls"),
    "office365": Preset("smtp.office365.com", 587, "starttls"),
    "smtp2go": Preset("mail.smtp2go.com", 587, "starttls"),
    SES: Preset("email-smtp.{region}.amazonaws.com", 587, "starttls"),
    "sendgrid": Preset("smtp.sendgrid.net", 587, "starttls"),
    "mailgun": Preset("smtp.mailgun.org", 587, "starttls"),
    "postmark": Preset("smtp.postmarkapp.com", 587, "starttls"),
    "fastmail": Preset("smtp.fastmail.com", 465, "tls"),
    "zoho": Preset("smtp.zoho.com", 465, "tls"),
}


def with_provider(smtp: dict[str, Any], doc: Located) -> dict[str, Any]:
    """The job's smtp mapping with its provider's host, port and security where it gave none.

    A security given without a port takes that security's usual port, not the provider's:
    `provider: gmail` with `security: tls` is port 465, where Gmail takes implicit TLS.
    """
    name = smtp.get("provider")
    if "region" in smtp and name != SES:
        raise invalid(
            doc.where(("smtp", "region")), "region is used with provider: ses", "smtp.region"
        )
    if name is None:
        return smtp
    preset = _preset(str(name), smtp, doc)
    filled = dict(smtp)
    filled.setdefault("host", preset.host)
    security = filled.setdefault("security", preset.security)
    if "port" not in filled:
        filled["port"] = preset.port if security == preset.security else DEFAULT_PORTS[security]
    return filled


def _preset(name: str, smtp: dict[str, Any], doc: Located) -> Preset:
    found = PRESETS.get(name)
    if found is None:
        # The schema's enum says this first; a job checked without it still gets one line.
        close = difflib.get_close_matches(name, list(PRESETS), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise invalid(
            doc.where(("smtp", "provider")),
            f"unknown provider {name!r}: one of {', '.join(PRESETS)}{hint}",
            "smtp.provider",
        )
    if name == SES:
        region = smtp.get("region")
        if not region:
            raise invalid(
                doc.where(("smtp", "provider")),
                "provider ses needs smtp.region, the AWS region of the endpoint (such as "
                "eu-west-1)",
                "smtp.region",
            )
        return Preset(found.host.format(region=region), found.port, found.security)
    return found
