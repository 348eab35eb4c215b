"""Reading notifications: what a bounce, a delay, an abuse report and anything else say."""

from __future__ import annotations

from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st
from samples import abuse_report, bounce, delay, ordinary

from batchmail.feedback.notifications import one_line, read_notification
from batchmail.state.feedback import FeedbackKind

ORIGINAL = "<20261202T184457Z-a1b2c3.1@example.com>"


def test_a_permanent_failure_is_bounced_with_its_status_diagnostic_and_original_id() -> None:
    notification = read_notification(bounce(message_id=ORIGINAL, recipient="user1@example.com"))

    [finding] = notification.findings
    assert finding.kind == FeedbackKind.BOUNCED
    assert finding.status == "5.1.1"
    assert finding.final_recipient == "user1@example.com"
    assert finding.diagnostic.startswith("smtp; 550 5.1.1 <user1@example.com>")
    assert notification.message_ids == (ORIGINAL,)
    assert notification.key == "<20261202184501.3F2A1C0042@mx.example.net>"
    assert notification.addressed_to == ("reports@example.com",)


def test_a_transient_failure_is_a_delay() -> None:
    notification = read_notification(delay(message_id=ORIGINAL, recipient="user2@example.com"))

    [finding] = notification.findings
    assert (finding.kind, finding.status) == (FeedbackKind.DELAYED, "4.4.1")


def test_an_abuse_report_is_a_complaint_with_or_without_the_whole_original() -> None:
    for returned in (True, False):
        data = abuse_report(message_id=ORIGINAL, recipient="user3@example.com", returned=returned)
        notification = read_notification(data)

        [finding] = notification.findings
        assert (finding.kind, finding.status) == (FeedbackKind.COMPLAINED, "abuse")
        assert finding.final_recipient == "user3@example.com"
        assert notification.message_ids == (ORIGINAL,)


def test_a_not_spam_or_authentication_failure_report_is_no_complaint() -> None:
    for kind in ("not-spam", "auth-failure"):
        data = abuse_report(message_id=ORIGINAL, recipient="u@example.com", feedback_type=kind)

        notification = read_notification(data)

        assert not notification.is_report
        assert "no failure, delay or abuse" in notification.not_report


def test_a_report_of_successful_delivery_names_nothing() -> None:
    data = bounce(
        message_id=ORIGINAL, recipient="u@example.com", status="2.0.0", action="delivered"
    )

    notification = read_notification(data)

    assert not notification.is_report
    assert "no failure" in notification.not_report


def test_an_ordinary_mail_and_an_autoreply_are_not_reports() -> None:
    reply = EmailMessage()
    reply["Subject"] = "Out of office"
    reply["Auto-Submitted"] = "auto-replied"
    reply["In-Reply-To"] = ORIGINAL
    reply.set_content("I am away until Monday.")

    for data in (ordinary(), reply.as_bytes()):
        notification = read_notification(data)
        assert not notification.is_report
        assert notification.not_report == "not a delivery report or abuse report"


def test_a_subject_with_terminal_escapes_and_line_breaks_is_shown_on_one_line() -> None:
    data = b"Subject: =?utf-8?q?a=1B[31mred=0D=0Aforged: x?=\r\n\r\nbody\r\n"

    subject = read_notification(data).subject

    assert "\x1b" not in subject
    assert "\n" not in subject
    assert "\r" not in subject


def test_one_line_cuts_long_values_and_removes_bidirectional_overrides() -> None:
    assert one_line("a\u202eb\tc\n d", 100) == "a b c d"
    assert len(one_line("x" * 500)) == 200


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_are_read_without_an_exception(data: bytes) -> None:
    notification = read_notification(data)

    assert "\n" not in notification.subject
    assert notification.key


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["Subject", "Content-Type", "Message-ID", "To", "References", "X-A"]),
        st.text(max_size=80),
        max_size=6,
    ),
    st.text(max_size=200),
)
def test_any_unicode_headers_and_body_are_read_without_an_exception(
    headers: dict[str, str], body: str
) -> None:
    text = "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n" + body
    notification = read_notification(text.encode("utf-8", "surrogatepass"))

    assert all(c.isprintable() for c in notification.subject)
