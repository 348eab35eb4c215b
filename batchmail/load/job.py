"""Loading a job file: safe YAML, env interpolation, the schema check, then the settings
records (settings.py) built from the document and checked beyond what the schema says."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from msgspec import Struct

from batchmail.errors import InvalidJobError, Problem, invalid
from batchmail.load.addresses import AddressError, Mailbox, parse_mailbox
from batchmail.load.data_options import data_file_options
from batchmail.load.message_fields import is_template, message_fields, suppress_files
from batchmail.load.providers import with_provider
from batchmail.load.schema import schema_problems
from batchmail.load.settings import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_PORTS,
    AttachmentSpec,
    DkimSettings,
    Grouping,
    InlineRecipient,
    Job,
    OAuth2Settings,
    RateSettings,
    RowFilter,
    SmtpSettings,
    TemplateRef,
    UnsubscribeSettings,
)
from batchmail.load.yaml_file import Located, dotted_path, load_yaml
from batchmail.load.yaml_file import Path as DocPath

TEXT_AUTO = "auto"  # `template.text: auto`: no template, the text part comes from the HTML
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class SchemaVerdict(Protocol):
    def problems(self, path: Path, text: str, environ: Mapping[str, str]) -> list[Problem] | None:
        """The schema problems of this job file with this text, if known for this environment."""


# A check of a job file's schema started ahead of load_job, which takes its answer once.
_ahead: list[SchemaVerdict] = []


def expect_schema_verdict(verdict: SchemaVerdict) -> None:
    """The next load_job takes the schema problems from `verdict`, if it has them for that file,
    text and environment; it checks the schema itself otherwise."""
    _ahead[:] = [verdict]


def display_path(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_job(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
) -> Job:
    """Read, interpolate, validate and convert a job file.

    Raises InvalidJobError listing every problem found, not only the first.
    """
    job_path = Path(path).absolute()
    ahead = _ahead.pop() if _ahead else None
    text, hook, doc = _parse(job_path, os.environ if environ is None else environ)
    found = ahead.problems(job_path, text, hook.environ) if ahead is not None else None
    # A value emptied by an unset variable would also fail the schema: say it once.
    unset = {p.what for p in hook.problems}
    schema = found if found is not None else schema_problems(doc)
    problems = hook.problems + [p for p in schema if p.what not in unset]
    if problems:
        raise InvalidJobError(sorted(problems, key=_problem_order))
    return _build_job(doc, job_path, hook.environ)


def schema_check(job_path: Path, environ: Mapping[str, str]) -> tuple[str, list[Problem]]:
    """The job file's text and its schema problems, as load_job finds them."""
    text, _, doc = _parse(job_path, environ)
    return text, list(schema_problems(doc))


def _parse(job_path: Path, environ: Mapping[str, str]) -> tuple[str, _Interpolator, Located]:
    """The file's text, the interpolation (with the unset variables it met) and the document."""
    shown = display_path(job_path)
    try:
        text = job_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid(shown, f"cannot read the job file: {exc}") from None
    hook = _Interpolator(environ, shown, [])
    return text, hook, load_yaml(text, shown, hook)


def _problem_order(problem: Problem) -> tuple[int, str]:
    _, _, line = problem.where.rpartition(":")
    return (int(line) if line.isdigit() else 0, problem.what)


class _Interpolator(Struct):
    """Replaces `${VAR}` and `${VAR:-default}` in scalars; `$$` stands for a literal `$`."""

    environ: Mapping[str, str]
    filename: str
    problems: list[Problem]

    def __call__(self, value: str, path: DocPath, line: int) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            found = self.environ.get(name)
            if found is not None and (found or default is None):
                return found
            if default is not None:
                return default
            self.problems.append(
                Problem(
                    f"{self.filename}:{line}",
                    f"environment variable {name} "
                    f"is not set (write ${{{name}:-default}} for a default)",
                    dotted_path(path),
                )
            )
            return ""

        return _ENV_REF.sub(replace, value)


def _build_job(doc: Located, job_path: Path, environ: Mapping[str, str]) -> Job:
    data: dict[str, Any] = doc.data
    base_dir = (job_path.parent / data.get("base_dir", ".")).resolve()
    smtp = _smtp_settings(data["smtp"], base_dir, doc)
    _check_template(data["template"], doc)
    limits = data.get("limits", {})
    retry = data.get("retry", {})
    return Job(
        path=job_path,
        name=data.get("name") or job_path.stem,
        base_dir=base_dir,
        sender=_mailbox(data["from"], doc, ("from",)),
        reply_to=_reply_to(data, doc),
        subject=data["subject"],
        subject_where=doc.where(("subject",)),
        text=_template_ref(data["template"], "text", doc),
        html=_template_ref(data["template"], "html", doc),
        vars=data.get("vars", {}),
        recipients=tuple(
            InlineRecipient(r, doc.where(("recipients", i)))
            for i, r in enumerate(data.get("recipients", []))
        ),
        recipients_file=_data_file(data, base_dir),
        recipients_file_where=doc.where(("recipients_file",)),
        recipients_options=data_file_options(data, doc),
        row_filter=RowFilter(data["where"], doc.where(("where",))) if "where" in data else None,
        group_by=Grouping(data["group_by"], doc.where(("group_by",)))
        if "group_by" in data
        else None,
        attachments=tuple(
            _attachment(item, doc.where(("attachments", i)))
            for i, item in enumerate(data.get("attachments", []))
        ),
        smtp=smtp,
        rate=RateSettings(**data.get("rate", {})),
        max_recipients=limits.get("max_recipients"),
        max_message_bytes=limits.get("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES),
        retry_max_attempts=retry.get("max_attempts", 3),
        retry_window=float(retry.get("window", 60.0)),
        markdown=_template_ref(data["template"], "markdown", doc),
        inline_images=data["template"].get("inline_images", False),
        text_auto=data["template"].get("text") == TEXT_AUTO,
        inline_css=data["template"].get("inline_css", False),
        dkim=_dkim_settings(data["dkim"], base_dir, doc, environ) if "dkim" in data else None,
        unsubscribe=_unsubscribe(data["unsubscribe"], doc) if "unsubscribe" in data else None,
        fields=message_fields(data, doc),
        suppress=suppress_files(data, base_dir),
        suppress_where=doc.where(("suppress",)),
    )


def _data_file(data: dict[str, Any], base_dir: Path) -> Path | None:
    found = data.get("recipients_file")
    if found is None:
        return None
    name: str = found["path"] if isinstance(found, dict) else found
    return base_dir / name


def _reply_to(data: dict[str, Any], doc: Located) -> Mailbox | None:
    """A literal Reply-To, checked now; a template is rendered per recipient (`fields`)."""
    text = data.get("reply_to")
    if text is None or is_template(text):
        return None
    return _mailbox(text, doc, ("reply_to",))


def _mailbox(text: str, doc: Located, path: DocPath) -> Mailbox:
    try:
        return parse_mailbox(text)
    except AddressError as exc:
        raise invalid(doc.where(path), str(exc), dotted_path(path)) from None


def _check_template(template: dict[str, Any], doc: Located) -> None:
    bodies = [part for part in ("text", "html", "markdown") if part in template]
    if not bodies:
        raise invalid(doc.where(("template",)), "give text, html or markdown", "template")
    if "markdown" in template and len(bodies) > 1:
        raise invalid(
            doc.where(("template", "markdown")),
            "markdown makes both the text and the HTML part: leave out text and html",
            "template.markdown",
        )
    if template.get("inline_images") and "markdown" not in template:
        raise invalid(
            doc.where(("template", "inline_images")),
            "inline_images embeds the images of a Markdown body: it needs template.markdown",
            "template.inline_images",
        )
    if template.get("text") == TEXT_AUTO and "html" not in template:
        raise invalid(
            doc.where(("template", "text")),
            "auto derives the text part from the HTML part: it needs template.html "
            "(a text template file named auto is written ./auto)",
            "template.text",
        )
    if template.get("inline_css") and not {"html", "markdown"} & template.keys():
        raise invalid(
            doc.where(("template", "inline_css")),
            "inline_css inlines the CSS of the HTML part: it needs template.html or markdown",
            "template.inline_css",
        )


def _dkim_settings(
    dkim: dict[str, Any], base_dir: Path, doc: Located, environ: Mapping[str, str]
) -> DkimSettings:
    where = doc.where(("dkim",))
    sources = [key for key in ("private_key_file", "private_key_env") if key in dkim]
    if len(sources) != 1:
        raise invalid(where, "give exactly one of private_key_file and private_key_env", "dkim")
    if "private_key_file" in dkim:
        path = base_dir / dkim["private_key_file"]
        source = display_path(path)
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise invalid(
                doc.where(("dkim", "private_key_file")),
                f"cannot read the DKIM key {source}: {exc.strerror}",
                "dkim.private_key_file",
            ) from None
    else:
        source = f"${dkim['private_key_env']}"
        value = environ.get(dkim["private_key_env"])
        if not value:
            raise invalid(
                doc.where(("dkim", "private_key_env")),
                f"environment variable {dkim['private_key_env']} is not set",
                "dkim.private_key_env",
            )
        key = value.encode("utf-8")
    headers = dkim.get("headers")
    return DkimSettings(
        domain=dkim["domain"],
        selector=dkim["selector"],
        private_key=key,
        key_source=source,
        headers=tuple(h.lower() for h in headers) if headers else None,
        where=where,
    )


def _unsubscribe(settings: dict[str, Any], doc: Located) -> UnsubscribeSettings:
    where = doc.where(("unsubscribe",))
    if "url" not in settings and "mailto" not in settings:
        raise invalid(where, "give url, mailto or both", "unsubscribe")
    if settings.get("one_click") and "url" not in settings:
        # RFC 8058 3.1: one-click unsubscription is an HTTPS POST to the URL.
        raise invalid(where, "one_click needs url (an https URL to POST to)", "unsubscribe")
    return UnsubscribeSettings(
        url=settings.get("url"),
        mailto=settings.get("mailto"),
        one_click=settings.get("one_click", False),
        url_where=doc.where(("unsubscribe", "url")),
        mailto_where=doc.where(("unsubscribe", "mailto")),
    )


def _template_ref(template: dict[str, str], part: str, doc: Located) -> TemplateRef | None:
    if part not in template or (part == "text" and template[part] == TEXT_AUTO):
        return None
    return TemplateRef(Path(template[part]).as_posix(), doc.where(("template", part)))


def _attachment(item: str | dict[str, Any], where: str) -> AttachmentSpec:
    if isinstance(item, str):
        return AttachmentSpec(item, where)
    return AttachmentSpec(item["path"], where, item.get("content_type"), item.get("required", True))


def _smtp_settings(given: dict[str, Any], base_dir: Path, doc: Located) -> SmtpSettings:
    smtp = with_provider(given, doc)
    security = smtp.get("security", "starttls")
    settings = SmtpSettings(
        host=smtp["host"],
        port=smtp.get("port", DEFAULT_PORTS[security]),
        security=security,
        username_env=smtp.get("username_env"),
        password_env=smtp.get("password_env"),
        timeout=float(smtp.get("timeout", 30.0)),
        ca_file=base_dir / smtp["ca_file"] if "ca_file" in smtp else None,
        allow_insecure_auth=smtp.get("allow_insecure_auth", False),
        helo=smtp.get("helo"),
        auth=smtp.get("auth", "password"),
        oauth2=OAuth2Settings(**smtp["oauth2"]) if "oauth2" in smtp else None,
    )
    if settings.auth == "xoauth2" or settings.oauth2 is not None:
        _check_xoauth2(settings, doc)
    elif bool(settings.username_env) != bool(settings.password_env):
        raise invalid(doc.where(("smtp",)), "username_env and password_env go together", "smtp")
    if settings.username_env and security == "none" and not settings.allow_insecure_auth:
        raise invalid(
            doc.where(("smtp", "security")),
            "AUTH without TLS would send the password in "
            "plaintext: use security starttls or tls, or set allow_insecure_auth: true",
            "smtp.security",
        )
    return settings


def _check_xoauth2(settings: SmtpSettings, doc: Located) -> None:
    def fail(message: str, *path: str) -> InvalidJobError:
        return invalid(doc.where(("smtp", *path)), message, ".".join(("smtp", *path)))

    oauth2 = settings.oauth2
    if settings.auth != "xoauth2":
        raise fail("oauth2 is only used with auth: xoauth2", "oauth2")
    if oauth2 is None:
        raise fail("auth: xoauth2 needs smtp.oauth2 (where the token comes from)", "auth")
    if not settings.username_env:
        raise fail("auth: xoauth2 needs username_env (the account's address)", "auth")
    if settings.password_env:
        raise fail(
            "auth: xoauth2 uses a token, not a password: leave password_env out", "password_env"
        )
    refresh = (oauth2.refresh_token_env, oauth2.client_id_env, oauth2.token_url)
    if oauth2.access_token_env and not any((*refresh, oauth2.client_secret_env)):
        return
    if oauth2.access_token_env or not all(refresh):
        raise fail(
            "give either access_token_env, or refresh_token_env, client_id_env, "
            "token_url (and client_secret_env)",
            "oauth2",
        )
    _check_token_url(str(oauth2.token_url), doc)


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def _check_token_url(url: str, doc: Located) -> None:
    # RFC 6749 3.2: the token endpoint MUST use TLS; plain http is allowed only to this machine,
    # where a test or a local token broker listens.
    parsed = urlsplit(url)
    if parsed.scheme == "https" and parsed.hostname:
        return
    if parsed.scheme == "http" and parsed.hostname in _LOOPBACK_HOSTS:
        return
    raise invalid(
        doc.where(("smtp", "oauth2", "token_url")),
        f"{url!r}: the token endpoint must be https (http only for 127.0.0.1, ::1, localhost)",
        "smtp.oauth2.token_url",
    )
