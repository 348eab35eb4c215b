"""`batchmail mcp` with addresses beyond ASCII: IDN domains, non-ASCII local parts and display
names, end to end through the SDK's stdio client and real SMTP servers on 127.0.0.1."""

from __future__ import annotations

from email import policy
from email.headerregistry import Address
from email.parser import Parser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcpsupport import Setup, connect
from smtpserver import Script, SmtpServerFactory
from support import make_job, parse

from batchmail.agents.policy import Allowlist
from batchmail.load.addresses import mailbox

pytestmark = pytest.mark.anyio

IDN_DOMAIN, IDN_ASCII = "bücher.example", "xn--bcher-kva.example"
BOB = f"Bob <idn@{IDN_DOMAIN}>"
ZHANG = "张伟 <zhang@example.com>"
UTF8_SENDER = "Zhāng <张伟@example.com>"


def named_job(setup: Setup, folder: str, sender: str = "Reports <reports@example.com>") -> Path:
    people = [
        {"email": f"idn@{IDN_DOMAIN}", "name": "Bob", "team": "books"},
        {"email": "zhang@example.com", "name": "张伟", "team": "core"},
    ]
    return make_job(
        setup.root / folder, setup.jobs_server.port, recipients=people, **{"from": sender}
    )


async def test_send_email_to_a_named_idn_recipient_delivers_once_and_says_so(setup: Setup) -> None:
    env = setup.server_env(BATCHMAIL_MCP_ALLOW=f"@{IDN_DOMAIN}")
    async with connect(env, setup.root) as mcp:
        sent = await mcp.ok("send_email", to=BOB, subject="Hi", body="Hello\n")
    (received,) = setup.mail_server.messages
    assert received.rcpt_tos == [f"idn@{IDN_ASCII}"]
    assert sent["status"] == "sent"
    assert sent["to"] == BOB
    assert sent["remaining_messages"] == 19


async def test_preview_of_a_job_with_a_named_idn_recipient_gives_a_token(setup: Setup) -> None:
    job = named_job(setup, "named")
    env = setup.server_env(BATCHMAIL_MCP_ALLOW=f"@example.com, @{IDN_DOMAIN}")
    async with connect(env, setup.root) as mcp:
        preview = await mcp.ok("preview_job", path=str(job))
    assert [shown["to"] for shown in preview["previews"]] == [BOB, ZHANG]
    assert len(preview["token"]) == 64
    assert preview["can_run"] is True


async def test_a_non_ascii_sender_travels_with_smtputf8(setup: Setup) -> None:
    env = setup.server_env(BATCHMAIL_FROM=UTF8_SENDER)
    async with connect(env, setup.root) as mcp:
        sent = await mcp.ok("send_email", to="user1@example.com", subject="Hi", body="Hello\n")
    (received,) = setup.mail_server.messages
    assert received.mail_from == "张伟@example.com"
    assert "SMTPUTF8" in received.mail_options
    # Parsed as text: the header holds UTF-8 (RFC 6532), which a bytes parser leaves escaped.
    sender = Parser(policy=policy.default).parsestr(received.data.decode())["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Zhāng", "张伟@example.com")
    assert sent["from"] == UTF8_SENDER


async def test_a_non_ascii_sender_without_smtputf8_is_one_clear_line(
    setup: Setup, smtp_server: SmtpServerFactory
) -> None:
    plain = smtp_server(script=Script(smtputf8=False))
    env = setup.server_env(
        BATCHMAIL_FROM=UTF8_SENDER,
        BATCHMAIL_SMTP_PORT=str(plain.port),
        BATCHMAIL_SMTP_SECURITY="none",
        BATCHMAIL_SMTP_USERNAME=None,
        BATCHMAIL_SMTP_PASSWORD=None,
    )
    async with connect(env, setup.root) as mcp:
        error = await mcp.refused("send_email", to="user1@example.com", subject="Hi", body="x\n")
        after = await mcp.ok("validate_job", path="job/job.yaml")
    assert after["remaining_messages"] == 20  # nothing was handed over: nothing counted
    assert "SMTPUTF8" in error
    assert "张伟@example.com" in error
    assert "internal error" not in error
    assert plain.messages == []


async def test_tool_results_show_names_as_people_write_them(setup: Setup) -> None:
    job = named_job(setup, "names", sender=UTF8_SENDER)
    env = setup.server_env(BATCHMAIL_FROM=UTF8_SENDER)
    async with connect(env, setup.root) as mcp:
        sent = await mcp.ok("send_email", to=ZHANG, subject="Hi", body="Hello\n")
        summary = await mcp.ok("validate_job", path=str(job))
    assert (sent["from"], sent["to"]) == (UTF8_SENDER, ZHANG)
    assert summary["from"] == UTF8_SENDER
    assert not any("=?" in text for text in mcp.seen)
    to = parse(setup.mail_server.messages[0].data)["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == ("张伟", "zhang@example.com")


@pytest.mark.parametrize("allowed", [f"@{IDN_DOMAIN}", f"@{IDN_ASCII}", f"idn@{IDN_DOMAIN}"])
async def test_the_allowlist_matches_an_idn_domain_in_either_form(
    setup: Setup, allowed: str
) -> None:
    both = [
        {"email": f"idn@{written}", "name": "Idn", "team": "books"}
        for written in (IDN_DOMAIN, IDN_ASCII)
    ]
    job = make_job(setup.root / "idn", setup.jobs_server.port, recipients=both)
    async with connect(setup.server_env(BATCHMAIL_MCP_ALLOW=allowed), setup.root) as mcp:
        preview = await mcp.ok("preview_job", path=str(job))
        for written in (IDN_DOMAIN, IDN_ASCII):
            await mcp.ok("send_email", to=f"idn@{written}", subject="Hi", body="x\n")
        outsider = await mcp.refused(
            "send_email", to=f"idn@sub.{IDN_ASCII}", subject="Hi", body="x\n"
        )
    assert preview["not_allowed"] == []
    assert preview["can_run"] is True
    assert len(setup.mail_server.messages) == 2
    assert f"idn@sub.{IDN_ASCII}" in outsider


@given(
    local=st.from_regex(r"[a-z0-9]{1,8}([.+_-][a-z0-9]{1,8}){0,3}", fullmatch=True),
    label=st.text(st.sampled_from("abcdeöüçøéñ"), min_size=1, max_size=12),
    upper=st.booleans(),
)
def test_an_allowlisted_mailbox_is_allowed_whichever_form_either_side_uses(
    local: str, label: str, upper: bool
) -> None:
    written = mailbox(f"{local}@{label}.example")
    forms = [written.unicode_address, written.ascii_address]
    for entry in (*forms, *(f"@{form.rpartition('@')[2]}" for form in forms)):
        allow = Allowlist.parse(entry.upper() if upper else entry)
        assert all(allow.allows(mailbox(form)) for form in forms), entry
    assert not Allowlist.parse(f"@{label}.example.org").allows(written)


async def test_a_run_with_names_beyond_ascii_delivers_once_and_shows_them(setup: Setup) -> None:
    """The acceptance run: a named IDN recipient, a non-ASCII sender, a Chinese display name,
    through preview_job, run_job and send_email."""
    job = named_job(setup, "acceptance", sender=UTF8_SENDER)
    allow = f"@example.com, @{IDN_DOMAIN}"
    env = setup.server_env(BATCHMAIL_MCP_ALLOW=allow, BATCHMAIL_FROM=UTF8_SENDER)
    async with connect(env, setup.root) as mcp:
        preview = await mcp.ok("preview_job", path=str(job))
        run = await mcp.ok("run_job", path=str(job), token=preview["token"])
        sent = [
            await mcp.ok("send_email", to=to, subject="Hi", body="Hello\n") for to in (BOB, ZHANG)
        ]
        report = await mcp.ok("get_report", path=str(job))
    assert not any("internal error" in text or "=?" in text for text in mcp.seen)
    assert preview["from"] == UTF8_SENDER
    assert [shown["to"] for shown in preview["previews"]] == [BOB, ZHANG]
    assert (run["status"], run["summary"]["sent"]) == ("completed", 2)
    assert [(s["from"], s["to"], s["status"]) for s in sent] == [
        (UTF8_SENDER, BOB, "sent"),
        (UTF8_SENDER, ZHANG, "sent"),
    ]
    assert sent[-1]["remaining_messages"] == 16
    assert [r["status"] for r in report["recipients"]] == ["sent", "sent"]
    for server in (setup.jobs_server, setup.mail_server):
        assert sorted(m.rcpt_tos[0] for m in server.messages) == [
            f"idn@{IDN_ASCII}",
            "zhang@example.com",
        ]
        for message in server.messages:
            assert message.mail_from == "张伟@example.com"
            to = parse(message.data)["To"].addresses[0]
            assert to in (
                Address("Bob", addr_spec=f"idn@{IDN_DOMAIN}"),
                Address("Bob", addr_spec=f"idn@{IDN_ASCII}"),
                Address("张伟", addr_spec="zhang@example.com"),
            )
