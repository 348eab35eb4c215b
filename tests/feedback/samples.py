"""Real-looking notifications, as receiving systems write them: a Postfix bounce (RFC 3464), a
delay warning, an abuse report in ARF (RFC 5965) and an ordinary mail."""

from __future__ import annotations


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def bounce(
    *,
    message_id: str,
    recipient: str,
    to: str = "reports@example.com",
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str = "smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown",
    notice_id: str = "<20261202184501.3F2A1C0042@mx.example.net>",
    subject: str = "Undelivered Mail Returned to Sender",
    returned: bool = True,
) -> bytes:
    """A Postfix-style non-delivery report holding the original message's headers, or, not
    `returned`, without them (as many receivers send it): then only its address tells whose."""
    diagnostic = diagnostic.format(recipient=recipient)
    original = f"""\
--3F2A1C0042.1764701101/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

Return-Path: <{to}>
From: Reports <reports@example.com>
To: {recipient}
Subject: Report for you
Date: Wed, 02 Dec 2026 18:44:57 +0000
Message-ID: {message_id}
MIME-Version: 1.0

"""
    return _crlf(f"""\
Return-Path: <>
Delivered-To: {to}
X-Original-To: {to}
Received: by mx.example.net (Postfix) id 3F2A1C0042; Wed,  2 Dec 2026 18:45:01 +0000 (UTC)
Date: Wed,  2 Dec 2026 18:45:01 +0000 (UTC)
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: {subject}
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="3F2A1C0042.1764701101/mx.example.net"
Content-Transfer-Encoding: 8bit
Message-Id: {notice_id}

This is a MIME-encapsulated message.

--3F2A1C0042.1764701101/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mail.example.com[192.0.2.25] said: 550 5.1.1
    <{recipient}>: Recipient address rejected: User unknown

--3F2A1C0042.1764701101/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 3F2A1C0042
X-Postfix-Sender: rfc822; {to}
Arrival-Date: Wed,  2 Dec 2026 18:44:58 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.example.com
Diagnostic-Code: {diagnostic}

{original if returned else ""}--3F2A1C0042.1764701101/mx.example.net--
""")


def delay(*, message_id: str, recipient: str, to: str = "reports@example.com") -> bytes:
    return bounce(
        message_id=message_id,
        recipient=recipient,
        to=to,
        status="4.4.1",
        action="delayed",
        diagnostic="X-Postfix; connect to mail.example.com[192.0.2.25]:25: Connection timed out",
        notice_id="<20261202190001.77B01C0042@mx.example.net>",
        subject="Delayed Mail (still being retried)",
    )


def abuse_report(
    *,
    message_id: str,
    recipient: str,
    to: str = "fbl@example.com",
    returned: bool = True,
    feedback_type: str = "abuse",
) -> bytes:
    """An ARF report as a mailbox provider's feedback loop sends it, with the whole original
    message returned (`returned`) or only its header (text/rfc822-headers)."""
    original = f"""\
From: Reports <reports@example.com>
To: {recipient}
Subject: Report for you
Date: Wed, 02 Dec 2026 18:44:57 +0000
Message-ID: {message_id}
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello.
"""
    kind = "message/rfc822" if returned else "text/rfc822-headers"
    if not returned:
        original = original.split("\n\n", maxsplit=1)[0] + "\n"
    return _crlf(f"""\
Return-Path: <feedback@fbl.example.org>
Delivered-To: {to}
From: Feedback Loop <feedback@fbl.example.org>
To: {to}
Subject: FW: Report for you
Date: Thu, 03 Dec 2026 08:00:00 +0000
Message-ID: <arf-7731@fbl.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="part1_13d.2e68ed54"

--part1_13d.2e68ed54
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP 192.0.2.10 on
Wed, 02 Dec 2026 18:44:57 +0000.

--part1_13d.2e68ed54
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <reports@example.com>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Wed, 02 Dec 2026 18:44:57 +0000
Source-IP: 192.0.2.10
Reported-Domain: example.com

--part1_13d.2e68ed54
Content-Type: {kind}
Content-Disposition: inline

{original}
--part1_13d.2e68ed54--
""")


def ordinary(*, to: str = "reports@example.com") -> bytes:
    return _crlf(f"""\
From: Pat <pat@example.org>
To: {to}
Subject: Re: Report for you
Date: Thu, 03 Dec 2026 09:00:00 +0000
Message-ID: <reply-1@example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Thanks for the report!
""")
