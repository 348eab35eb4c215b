"""The folder transport: a dry run writes each message as an `.eml` file and finds it again."""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, example, given, reject, settings
from hypothesis import strategies as st
from support import cli, make_job, parse, parse_utf8, report_of

from batchmail.cli import main
from batchmail.load.addresses import AddressError, Mailbox, has_line_break, mailbox
from batchmail.transport.contract import Envelope, Route
from batchmail.transport.folder import FolderTransport, eml_name


def dry_run_of(folder: Path, capsys: pytest.CaptureFixture[str], *people: dict[str, str]) -> Path:
    """`batchmail run JOB --dry-run --out OUT` for these recipients; the preview folder."""
    job = make_job(folder, recipients=[{"team": "core", **person} for person in people])
    out = folder / "out"
    code, _, err = cli(capsys, "run", job, "--dry-run", "--out", out)
    assert code == 0, err
    return out


def test_a_dry_run_finds_the_eml_of_a_recipient_at_an_idn_domain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = dry_run_of(tmp_path, capsys, {"email": "idn@bücher.example", "name": "Bob"})

    [eml] = out.glob("*.eml")
    assert eml.name == "000001-idn@bücher.example.eml"  # the address as people write it
    assert parse(eml.read_bytes())["To"].addresses[0].display_name == "Bob"
    assert f'href="{quote(eml.name)}"' in (out / "index.html").read_text(encoding="utf-8")
    report = report_of(out / "report.json")
    assert report["status"] == "completed"
    assert [r["status"] for r in report["recipients"]] == ["previewed"]


def test_a_dry_run_keeps_the_name_beside_a_non_ascii_local_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = dry_run_of(tmp_path, capsys, {"email": "josé@example.com", "name": "Bob"})

    [eml] = out.glob("*.eml")
    data = eml.read_bytes()
    # RFC 6532 3.2: the header carries the address as UTF-8, as written.
    assert "\r\nTo: Bob <josé@example.com>\r\n".encode() in data
    [to] = parse_utf8(data)["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Bob", "josé@example.com")


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("alice@example.com", "000012-alice@example.com.eml"),
        ("idn@xn--bcher-kva.example", "000012-idn@bücher.example.eml"),
        ("Idn@BÜCHER.example", "000012-Idn@bücher.example.eml"),
        ("josé@bücher.example", "000012-josé@bücher.example.eml"),
        ("张伟@例子.中国", "000012-张伟@例子.中国.eml"),
        ("a/%/b@example.org", "000012-a___b@example.org.eml"),
    ],
)
def test_an_eml_is_named_by_the_address_as_people_write_it(address: str, name: str) -> None:
    assert eml_name(12, address) == name


# Addresses as people write them: local parts and domain labels of letters and digits of any
# script, with the punctuation an address allows; `addresses` keeps those `mailbox()` accepts.
_ATEXT = "!#$%&'*+-/=?^_`{|}~."
_LOCAL = st.text(st.characters(categories=["L", "N"]) | st.sampled_from(_ATEXT), max_size=70)
_LABEL = st.text(st.characters(categories=["Ll", "Lo", "Nd"]), min_size=1, max_size=25)
_DOMAIN = st.builds(
    lambda labels, top: ".".join([*labels, top]),
    st.lists(_LABEL, min_size=1, max_size=3),
    st.sampled_from(["example", "org", "рф", "中国"]),
)


@st.composite
def addresses(draw: st.DrawFn) -> Mailbox:
    address = f"{draw(_LOCAL)}@{draw(_DOMAIN)}"
    try:
        return mailbox(address)
    except AddressError:
        reject()


# 237 bytes in UTF-8: its name is cut to stay within 255 bytes.
LONGEST = mailbox("a" * 64 + "@" + ".".join(["中文" * 9] * 3) + ".example")


def is_one_safe_component(name: str) -> bool:
    return (
        name not in ("", ".", "..")
        and not any(c in "/\\" or unicodedata.category(c).startswith("C") for c in name)
        and len(name.encode()) <= 255
        and Path(name).name == name
    )


@settings(max_examples=200, deadline=None)
@given(addresses(), st.integers(1, 10**7))
@example(LONGEST, 10**7)
@example(mailbox("a/%/b@example.org"), 1)  # a slash is atext (RFC 5322 3.2.3)
def test_an_eml_name_is_one_safe_path_component_from_any_form_of_the_address(
    box: Mailbox, seq: int
) -> None:
    name = eml_name(seq, box.address)

    assert is_one_safe_component(name)
    assert name.startswith(f"{seq:06d}-")
    assert name.endswith(".eml")
    assert eml_name(seq, box.envelope_address) == name  # the folder transport's form
    assert eml_name(seq, box.unicode_address) == name


@settings(max_examples=200, deadline=None)
@given(addresses())
@example(LONGEST)
def test_the_folder_transport_writes_the_eml_under_its_name(box: Mailbox) -> None:
    route = Route(7, "reports@example.com", box.envelope_address, box.smtputf8)
    with tempfile.TemporaryDirectory() as folder:
        transport = FolderTransport(Path(folder))
        outcome = transport.send(Envelope(route, b"Subject: hi\r\n\r\nhello\r\n"))
        transport.close()

        assert outcome.response == eml_name(7, box.address)
        assert (Path(folder) / eml_name(7, box.address)).read_bytes().endswith(b"hello\r\n")
        assert os.listdir(folder) == [outcome.response]


# Display names of any script; spaces single and between words (a reader folds a run of them).
_NAMES = st.text(st.characters(exclude_categories=["Cs"]), max_size=30).map(
    lambda name: re.sub(r"[ \t]+", " ", name).strip(" \t")
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(addresses(), _NAMES)
@example(LONGEST, "Bob")
@example(mailbox("josé@example.com"), 'Bob "the" Builder, Jr.')
def test_a_dry_run_writes_and_finds_the_eml_of_any_address(box: Mailbox, name: str) -> None:
    assume(not has_line_break(name))
    with tempfile.TemporaryDirectory() as folder:
        person = {"email": box.address, "team": "core", **({"name": name} if name else {})}
        job = make_job(Path(folder), subject="Report", recipients=[person])
        for template in ("body.txt.j2", "body.html.j2"):  # the name stays out of the body
            (Path(folder) / "templates" / template).write_text("Hello {{ team }}")
        out = Path(folder) / "out"
        assert main(["run", str(job), "--dry-run", "--out", str(out)]) == 0

        [eml] = out.glob("*.eml")
        assert eml.name == eml_name(1, box.address)
        assert f'href="{quote(eml.name)}"' in (out / "index.html").read_text(encoding="utf-8")
        [to] = parse_utf8(eml.read_bytes())["To"].addresses
        assert to.addr_spec == box.envelope_address
        # Spaces aside: Python's parser keeps the folding space between two encoded-words of a
        # long name, which RFC 2047 6.2 drops (tests/build checks the name exactly).
        assert to.display_name.replace(" ", "") == name.replace(" ", "")
