#!/usr/bin/env python3
"""Generate the benchmark job for N recipients, for batchmail and for mailmerge.

Usage: gen_job.py N OUTDIR [--port PORT] [--connections C] [--no-mailmerge]

Writes into OUTDIR (created if missing):

* batchmail: job.yaml, body.txt.j2, body.html.j2, recipients.csv, invoice.pdf
* mailmerge: mailmerge_template.txt, mailmerge_database.csv, mailmerge_server.conf
  (same subject, same text and HTML bodies, same PDF via mailmerge's ATTACHMENT header)

Standard library only, deterministic output (fixed random seed).
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import gen_tables

FROM_ADDR = "Bench <bench@example.com>"
SUBJECT = "Invoice for {{ name|title }}{% if vip == 'yes' %} (VIP){% endif %}"
PDF_NAME = "invoice.pdf"
PDF_SIZE = 2048
SEED = 20240601

FIRST_NAMES = (
    "ada", "alan", "grace", "linus", "barbara", "ken", "margaret", "dennis",
    "frances", "edsger", "radia", "tim", "hedy", "donald", "katherine", "john",
)
LAST_NAMES = (
    "lovelace", "turing", "hopper", "torvalds", "liskov", "thompson", "hamilton",
    "ritchie", "allen", "dijkstra", "perlman", "berners-lee", "lamarr", "knuth",
)
TEAMS = ("sales", "support", "engineering", "finance", "marketing", "operations")
VIP_EVERY = 10

# The same Jinja2 text is used by both contenders: variables, filters
# (title, upper, format, float) and an if/else on the vip column.
TEXT_BODY = """\
Hello {{ name|title }},

{% if vip == 'yes' %}As one of our VIP customers you get priority handling and a
dedicated contact person for every question about this invoice.
{% else %}Thank you for being a customer. If you have a question about this
invoice, our support team is happy to help during business hours.
{% endif %}
Invoice summary
---------------
Customer:    {{ name|title }} <{{ email }}>
Team:        {{ team|upper }}
Amount due:  {{ "%.2f"|format(amount|float) }} EUR
Status:      {% if vip == 'yes' %}VIP (net 60){% else %}standard (net 30){% endif %}

The invoice is attached to this message as a PDF file. Please pay the amount
above by bank transfer within the payment period and quote the invoice number
printed on the PDF, so that we can match your payment quickly.

This message was generated automatically for the batchmail benchmark. It has
no meaning outside of it, and nobody reads replies to it.

Kind regards,
The Bench Billing Team
"""

HTML_BODY = """\
<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>Invoice</title></head>
<body style="font-family: sans-serif; font-size: 14px;">
<p>Hello {{ name|title }},</p>
{% if vip == 'yes' %}<p>As one of our <strong>VIP customers</strong> you get priority
handling and a dedicated contact person for every question about this invoice.</p>
{% else %}<p>Thank you for being a customer. If you have a question about this
invoice, our support team is happy to help during business hours.</p>
{% endif %}<table style="border-collapse: collapse;">
<tr><th align="left">Customer</th><td>{{ name|title }} &lt;{{ email }}&gt;</td></tr>
<tr><th align="left">Team</th><td>{{ team|upper }}</td></tr>
<tr><th align="left">Amount due</th><td>{{ "%.2f"|format(amount|float) }} EUR</td></tr>
<tr><th align="left">Status</th><td>{% if vip == 'yes' %}VIP (net 60){% else %}\
standard (net 30){% endif %}</td></tr>
</table>
<p>The invoice is attached to this message as a PDF file. Please pay the amount
above by bank transfer within the payment period and quote the invoice number
printed on the PDF, so that we can match your payment quickly.</p>
<p style="color: #777777;">This message was generated automatically for the
batchmail benchmark.</p>
<p>Kind regards,<br>The Bench Billing Team</p>
</body>
</html>
"""

JOB_YAML = """\
version: 1
name: bench
from: "{from_addr}"
subject: "{subject}"
template:
  text: body.txt.j2
  html: body.html.j2
recipients_file: {recipients_file}
{group_by}attachments:
  - {pdf}
smtp:
  host: 127.0.0.1
  port: {port}
  security: none
rate:
  connections: {connections}
"""

MAILMERGE_TEMPLATE = """\
TO: {{{{ email }}}}
FROM: {from_addr}
SUBJECT: {subject}
ATTACHMENT: {pdf}
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="bench-mixed-boundary"

This is a MIME-encoded message.

--bench-mixed-boundary
Content-Type: multipart/alternative; boundary="bench-alt-boundary"

--bench-alt-boundary
Content-Type: text/plain; charset=us-ascii

{text}
--bench-alt-boundary
Content-Type: text/html; charset=us-ascii

{html}
--bench-alt-boundary--

--bench-mixed-boundary--
"""

MAILMERGE_CONF = """\
# mailmerge SMTP server config for the batchmail benchmark (smtp-sink on loopback)
[smtp_server]
host = 127.0.0.1
port = {port}
security = Never
ratelimit = 0
"""


def _pdf_objects(stream: bytes) -> list[bytes]:
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]


def _pdf_bytes(stream: bytes) -> bytes:
    """Assemble a one-page PDF with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: list[int] = []
    for number, body in enumerate(_pdf_objects(stream), start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(offsets) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def _pdf_stream(pad: int) -> bytes:
    lines = [b"BT /F1 18 Tf 72 720 Td (Invoice - batchmail benchmark) Tj ET"]
    for row in range(12):
        text = b"Line %02d: a fixed test attachment of about two kilobytes." % row
        lines.append(b"BT /F1 10 Tf 72 %d Td (%s) Tj ET" % (690 - 14 * row, text))
    lines.append(b"BT /F1 6 Tf 72 40 Td (" + b"." * pad + b") Tj ET")
    return b"\n".join(lines)


def make_pdf(target_size: int = PDF_SIZE) -> bytes:
    """A small valid PDF padded (with a line of dots) to exactly target_size bytes if possible."""
    base = _pdf_bytes(_pdf_stream(0))
    # Padding adds to the stream and may widen /Length by a digit: settle in two passes.
    pdf = _pdf_bytes(_pdf_stream(max(0, target_size - len(base))))
    overshoot = len(pdf) - target_size
    if overshoot > 0:
        pdf = _pdf_bytes(_pdf_stream(max(0, target_size - len(base) - overshoot)))
    return pdf


def recipient_rows(count: int, per_recipient: int = 1) -> Iterator[tuple[str, str, str, str, str]]:
    """Yield deterministic recipient rows: email, name, team, amount, vip. With
    `per_recipient` > 1, each address is on that many rows, spread over the file (row i is
    recipient i mod count/per_recipient's), as in a list of invoices."""
    rng = random.Random(SEED)
    width = max(5, len(str(count)))
    recipients = max(1, count // per_recipient)
    for index in range(1, count + 1):
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        yield (
            f"user{(index - 1) % recipients + 1:0{width}d}@example.com",
            name,
            rng.choice(TEAMS),
            f"{rng.uniform(10, 5000):.2f}",
            "yes" if index % VIP_EVERY == 0 else "no",
        )


HEADER = ("email", "name", "team", "amount", "vip")


def write_recipients(path: Path, count: int, per_recipient: int = 1) -> None:
    if path.suffix == ".xlsx":
        gen_tables.write_xlsx(path, HEADER, recipient_rows(count, per_recipient), count)
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(recipient_rows(count, per_recipient))


def write_batchmail_job(
    outdir: Path, port: int, connections: int, data: str = "csv", grouped: bool = False
) -> Path:
    (outdir / "body.txt.j2").write_text(TEXT_BODY, encoding="utf-8")
    (outdir / "body.html.j2").write_text(HTML_BODY, encoding="utf-8")
    job = outdir / "job.yaml"
    job.write_text(
        JOB_YAML.format(
            from_addr=FROM_ADDR, subject=SUBJECT, pdf=PDF_NAME,
            port=port, connections=connections, recipients_file=f"recipients.{data}",
            group_by="group_by: email\n" if grouped else "",
        ),
        encoding="utf-8",
    )
    return job


def write_mailmerge_files(outdir: Path, port: int) -> None:
    template = MAILMERGE_TEMPLATE.format(
        from_addr=FROM_ADDR, subject=SUBJECT, pdf=PDF_NAME,
        text=TEXT_BODY, html=HTML_BODY,
    )
    (outdir / "mailmerge_template.txt").write_text(template, encoding="utf-8")
    (outdir / "mailmerge_server.conf").write_text(MAILMERGE_CONF.format(port=port), "utf-8")
    shutil.copyfile(outdir / "recipients.csv", outdir / "mailmerge_database.csv")


def generate(
    count: int, outdir: Path, port: int = 2525, connections: int = 2, mailmerge: bool = True,
    data: str = "csv", per_recipient: int = 0,
) -> Path:
    """Write the whole job into outdir; return the batchmail job file. `data`: the recipients
    file's kind (csv, xlsx); `per_recipient` > 0: that many rows per address, `group_by: email`
    (count rows, count / per_recipient messages)."""
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / PDF_NAME).write_bytes(make_pdf())
    write_recipients(outdir / f"recipients.{data}", count, max(1, per_recipient))
    job = write_batchmail_job(outdir, port, connections, data, grouped=per_recipient > 0)
    if mailmerge:
        write_mailmerge_files(outdir, port)
    return job


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipients", type=int, metavar="N", help="number of recipients")
    parser.add_argument("outdir", type=Path, metavar="OUTDIR")
    parser.add_argument("--port", type=int, default=2525, help="SMTP sink port (2525)")
    parser.add_argument("--connections", type=int, default=2,
                        help="batchmail rate.connections (2)")
    parser.add_argument("--no-mailmerge", action="store_true",
                        help="write only the batchmail job")
    args = parser.parse_args(argv)
    if args.recipients < 1:
        parser.error("N must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    job = generate(args.recipients, args.outdir, args.port, args.connections,
                   mailmerge=not args.no_mailmerge)
    print(f"wrote {args.recipients} recipients, job {job}"
          f"{'' if args.no_mailmerge else ' and mailmerge files'} in {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
