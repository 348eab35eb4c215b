"""`batchmail check`, its DNS half: the From domain's SPF and DMARC records and the DKIM key
published for the job's selector, each judged ok / warn / fail against the job."""

from __future__ import annotations

import base64
import binascii

from batchmail.build.dkim_sign import public_numbers, published_numbers
from batchmail.load.settings import DkimSettings, Job
from batchmail.transport.dns_lookup import Lookups, TxtAnswer
from batchmail.transport.probe import Check, Status

_SHOWN = 160  # characters of a record shown in a line
_POLICIES = ("none", "quarantine", "reject")


def dns_checks(job: Job, lookups: Lookups) -> list[Check]:
    """SPF and DMARC of the From domain, then the DKIM key at SELECTOR._domainkey.DOMAIN."""
    domain = job.sender.domain_key
    signer = _ascii_domain(job.dkim.domain) if job.dkim is not None else None
    checks = [
        spf(domain, lookups.txt(domain)),
        dmarc(domain, _dmarc_answer(lookups, domain), signer),
    ]
    if job.dkim is None:
        return [
            *checks,
            Check("dkim", "warn", "skipped: the job does not sign (no dkim settings)"),
        ]
    name = f"{job.dkim.selector}._domainkey.{signer}"
    return [*checks, dkim_key(lookups.txt(name), job.dkim)]


def _ascii_domain(domain: str) -> str:
    try:
        return domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return domain.rstrip(".").lower()


def _dmarc_answer(lookups: Lookups, domain: str) -> TxtAnswer:
    """The From domain's DMARC record, else its organisational domain's (RFC 7489 6.6.3)."""
    answer = lookups.txt(f"_dmarc.{domain}")
    # The organisational domain needs the Public Suffix List; the last two labels stand in
    # for it, which is right for example.com and wrong for example.co.uk (then nothing found).
    parent = ".".join(domain.split(".")[-2:])
    if answer.found == "absent" and parent != domain:
        fallback = lookups.txt(f"_dmarc.{parent}")
        if fallback.found == "found":
            return fallback
    return answer


def spf(domain: str, answer: TxtAnswer) -> Check:
    """RFC 7208 4.5: exactly one TXT record starting `v=spf1`."""
    if answer.found == "failed":
        return Check("spf", "fail", f"{domain}: the lookup failed: {answer.reason}")
    records = [t for t in answer.texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
    if not records:
        why = f" ({answer.reason})" if answer.reason else ""
        return Check(
            "spf",
            "fail",
            f"no SPF record (TXT v=spf1) at {domain}{why}: receivers cannot tell which servers "
            "may send as it",
        )
    if len(records) > 1:
        return Check(
            "spf",
            "fail",
            f"{len(records)} SPF records at {domain}: receivers take several as an error "
            "(RFC 7208 4.5); publish one",
        )
    return Check("spf", "ok", f"{domain}: {_shown(records[0])}")


def dmarc(domain: str, answer: TxtAnswer, signer: str | None) -> Check:
    """RFC 7489 6.3: one `v=DMARC1` record with a policy; and whether From aligns with the
    DKIM d= as its adkim says (3.1.1)."""
    name = answer.name
    if answer.found == "failed":
        return Check("dmarc", "fail", f"{name}: the lookup failed: {answer.reason}")
    records = [tags for text in answer.texts if (tags := _tags(text)) and _is_dmarc(tags)]
    if not records:
        why = f" ({answer.reason})" if answer.reason else ""
        return Check(
            "dmarc",
            "warn",
            f"no DMARC record (TXT v=DMARC1) at _dmarc.{domain}{why}: receivers apply their own "
            "policy to mail that fails SPF and DKIM",
        )
    if len(records) > 1:
        return Check(
            "dmarc",
            "warn",
            f"{len(records)} DMARC records at {name}: receivers ignore them all (RFC 7489 6.6.3)",
        )
    tags = records[0]
    # A subdomain under its organisational domain's record gets sp= if given (RFC 7489 6.3).
    key = "sp" if name != f"_dmarc.{domain}" and "sp" in tags else "p"
    policy = tags.get(key, "").lower()
    aligned, alignment = _alignment(domain, signer, tags.get("adkim", "r"))
    if policy not in _POLICIES:
        shown = f"{key}={_shown(policy)}" if policy else "no p="
        return Check("dmarc", "warn", f"{name}: {shown}, not a policy (none, quarantine, reject)")
    detail = f"{name}: {key}={policy}"
    if policy == "none":
        detail += " (receivers only report: mail failing DMARC is still delivered)"
    status: Status = "warn" if policy == "none" or aligned is False else "ok"
    return Check("dmarc", status, f"{detail}; {alignment}")


def _alignment(domain: str, signer: str | None, adkim: str) -> tuple[bool | None, str]:
    if signer is None:
        return None, "the job does not sign with DKIM, so DMARC can pass only through SPF"
    strict = adkim.strip().lower() == "s"
    mode = "adkim=s, strict" if strict else "adkim=r, relaxed"
    if strict:
        aligned = domain == signer
    else:
        # Relaxed alignment compares organisational domains (RFC 7489 3.1.1); without the
        # Public Suffix List, the same domain or one a subdomain of the other stands in for it.
        aligned = domain == signer or domain.endswith(f".{signer}") or signer.endswith(f".{domain}")
    if aligned:
        return True, f"From {domain} aligns with DKIM d={signer} ({mode})"
    return False, (
        f"From {domain} does not align with DKIM d={signer} ({mode}): the job's signature "
        "cannot make DMARC pass"
    )


def dkim_key(answer: TxtAnswer, settings: DkimSettings) -> Check:
    """RFC 6376 3.6.1: the key record at the selector, against the job's private key."""
    name = answer.name
    if answer.found == "failed":
        return Check("dkim", "fail", f"DKIM key {name}: the lookup failed: {answer.reason}")
    records = [tags for text in answer.texts if (tags := _tags(text)) and _is_dkim(tags)]
    if not records:
        why = f" ({answer.reason})" if answer.reason else ""
        return Check(
            "dkim",
            "fail",
            f"no DKIM key (TXT v=DKIM1; k=rsa; p=...) at {name}{why}: receivers cannot verify "
            "the job's signatures",
        )
    if len(records) > 1:
        return Check(
            "dkim",
            "fail",
            f"{len(records)} DKIM key records at {name}: receivers may take any of them",
        )
    return _key_against_job(name, records[0], settings)


def _key_against_job(name: str, tags: dict[str, str], settings: DkimSettings) -> Check:
    kind = tags.get("k", "rsa").lower()
    data = "".join(tags["p"].split())
    if not data:
        return Check("dkim", "fail", f"the DKIM key at {name} is revoked (empty p=)")
    if kind != "rsa":
        return Check(
            "dkim",
            "fail",
            f"the DKIM key at {name} is k={_shown(kind)}, and the job signs with an RSA key",
        )
    try:
        published = published_numbers(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return Check("dkim", "fail", f"the DKIM record at {name}: p= is not an RSA public key")
    modulus, _ = key = public_numbers(settings.private_key)
    if published != key:
        source = f" ({settings.key_source})" if settings.key_source else ""
        return Check(
            "dkim",
            "fail",
            f"the DKIM key published at {name} is not the public half of the job's private "
            f"key{source}: receivers will find the job's signatures broken",
        )
    return Check(
        "dkim",
        "ok",
        f"the key published at {name} matches the job's private key "
        f"(RSA, {modulus.bit_length()} bits)",
    )


def _tags(text: str) -> dict[str, str] | None:
    """A tag=value list (RFC 6376 3.2, RFC 7489 6.4); None when it is not one."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        tag, equals, value = part.partition("=")
        tag = tag.strip().lower()
        if not equals or not tag or tag in tags:
            return None
        tags[tag] = value.strip()
    return tags


def _is_dmarc(tags: dict[str, str]) -> bool:
    return next(iter(tags)) == "v" and tags["v"] == "DMARC1"  # v= first (RFC 7489 6.4)


def _is_dkim(tags: dict[str, str]) -> bool:
    # v= is optional; when given it comes first and is DKIM1 (RFC 6376 3.6.1).
    version = "v" not in tags or (next(iter(tags)) == "v" and tags["v"] == "DKIM1")
    return version and "p" in tags


def _shown(text: str) -> str:
    """A record as one printable line, cut short when long."""
    line = "".join(c if c.isprintable() else "?" for c in text)
    return line if len(line) <= _SHOWN else line[: _SHOWN - 3] + "..."
