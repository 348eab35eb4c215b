"""The job's message fields rendered per recipient: cc, bcc, reply_to, headers and
envelope_from, in the bytes (Bcc never), in the envelope, in the errors and in the digest."""

from __future__ import annotations

from email import message_from_bytes
from email.header import decode_header, make_header
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import cli, line_of, make_job, parse

from batchmail import api
from batchmail.build.message_fields import copies_of
from batchmail.errors import InvalidJobError
from batchmail.load.addresses import parse_mailbox
from batchmail.transport.contract import Envelope, Outcome, OutcomeState, Route

PEOPLE = [
    {"email": "ann@example.com", "name": "Ann", "team": "core", "manager": "Mia <mia@example.com>"},
    {"email": "bob@example.com", "name": "Bob", "team": "web", "manager": ""},
]
FIELDS: dict[str, Any] = {
    "recipients": PEOPLE,
    "attachments": None,
    "cc": ["{{ manager }}", "Build Team <builds@example.com>"],
    "bcc": "archive+{{ team }}@example.com, ann@example.com",
    "reply_to": "{{ name }} Desk <desk-{{ team }}@example.com>",
    "headers": {"X-Campaign": "spring-{{ team }}", "X-Note": "für {{ name }}"},
    "envelope_from": "bounces+{{ email | replace('@', '=') }}@example.com",
}


class Recording:
    """A transport that accepts everything and keeps each envelope, its route whole."""

    def __init__(self, envelopes: list[Envelope], defer: str = ""):
        self.envelopes = envelopes
        self.defer = defer

    def send(self, envelope: Envelope) -> Outcome:
        if envelope.route.recipient == self.defer:
            return Outcome(OutcomeState.DEFERRED, 451, "4.3.0 try later")
        self.envelopes.append(envelope)
        return Outcome(OutcomeState.SENT, 250, "2.0.0 OK")

    def close(self) -> None:
        return None


def run_recorded(job: Path, defer: str = "") -> tuple[api.RunResult, list[Envelope]]:
    envelopes: list[Envelope] = []
    options = api.RunOptions(
        environ={}, transports=lambda: Recording(envelopes, defer), processes=1
    )
    return api.run_job(job, options), envelopes


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_each_recipient_gets_its_own_fields_in_the_bytes_and_no_bcc(tmp_path: Path) -> None:
    result, envelopes = run_recorded(make_job(tmp_path, **FIELDS))
    assert result.exit_code == 0
    ann, bob = (parse(e.data) for e in sorted(envelopes, key=lambda e: e.route.seq))
    assert getaddresses([str(ann["Cc"])]) == [
        ("Mia", "mia@example.com"),
        ("Build Team", "builds@example.com"),
    ]
    assert getaddresses([str(bob["Cc"])]) == [("Build Team", "builds@example.com")]
    assert str(ann["Reply-To"]) == "Ann Desk <desk-core@example.com>"
    assert str(bob["Reply-To"]) == "Bob Desk <desk-web@example.com>"
    assert (ann["X-Campaign"], bob["X-Campaign"]) == ("spring-core", "spring-web")
    assert (ann["X-Note"], bob["X-Note"]) == ("für Ann", "für Bob")
    assert list(ann.keys()).index("Cc") == list(ann.keys()).index("To") + 1
    for envelope in envelopes:
        assert envelope.data.isascii()  # the non-ASCII header value is encoded (RFC 2047)
        assert b"bcc" not in envelope.data.lower()
        assert b"archive" not in envelope.data
        assert b"bounces+" not in envelope.data  # the envelope sender is in no header


def test_addressing_per_recipient_reaches_the_transport(tmp_path: Path) -> None:
    _, envelopes = run_recorded(make_job(tmp_path, **FIELDS))
    routes = sorted((e.route for e in envelopes), key=lambda r: r.seq)
    assert routes == [
        Route(
            1,
            "bounces+ann=example.com@example.com",
            "ann@example.com",
            False,
            # cc then bcc, each once; the primary recipient (in bcc too) is not a copy
            ("mia@example.com", "builds@example.com", "archive+core@example.com"),
        ),
        Route(
            2,
            "bounces+bob=example.com@example.com",
            "bob@example.com",
            False,
            ("builds@example.com", "archive+web@example.com", "ann@example.com"),
        ),
    ]


def test_without_the_keys_the_envelope_is_the_senders_alone(tmp_path: Path) -> None:
    _, envelopes = run_recorded(make_job(tmp_path, attachments=None))
    assert {(e.route.sender, e.route.copies) for e in envelopes} == {("reports@example.com", ())}
    assert all(b"\r\nCc:" not in e.data for e in envelopes)


def test_a_literal_reply_to_still_works(tmp_path: Path) -> None:
    _, envelopes = run_recorded(make_job(tmp_path, attachments=None, reply_to="Desk <d@x.org>"))
    assert {str(parse(e.data)["Reply-To"]) for e in envelopes} == {"Desk <d@x.org>"}


def test_no_trace_of_bcc_in_the_dry_runs_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_job(tmp_path, **FIELDS)
    code, _, _ = cli(capsys, "run", "job.yaml", "--dry-run", "--out", "out")
    assert code == 0
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.suffix == ".eml" for p in files)
    assert any(p.name == "index.html" for p in files)
    for path in files:
        data = path.read_bytes()
        assert b"archive+" not in data, path
        assert b"bcc:" not in data.lower(), path
    eml = sorted((tmp_path / "out").glob("*.eml"))[0].read_bytes()
    assert parse(eml)["Cc"] is not None


@pytest.mark.parametrize(
    ("key", "value", "field", "said"),
    [
        ("cc", "{{ manager }}, not-an-address", "cc", "'not-an-address'"),
        ("bcc", "{{ name }}@@example.com", "bcc", "'Ann@@example.com'"),
        ("envelope_from", "bounces {{ name }}", "envelope_from", "'bounces Ann'"),
        ("reply_to", "{{ name }}@", "reply_to", "'Ann@'"),
        ("headers", {"X-Campaign": "a{{ '\\r\\n' }}Bcc: x@evil.org"}, "headers.X-Campaign", ""),
    ],
)
def test_a_bad_rendered_value_is_a_job_error_naming_line_field_and_recipient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: Any, field: str, said: str
) -> None:
    job = make_job(tmp_path, recipients=PEOPLE, attachments=None, **{key: value})
    code, _, err = cli(capsys, "validate", "job.yaml")
    assert code == 2
    text = job.read_text(encoding="utf-8")
    line = line_of(text, "X-Campaign:" if key == "headers" else f"{key}:")
    problems = [row for row in err.splitlines() if row.startswith("job.yaml:")]
    assert len(problems) == 2  # every recipient's problem, listed together
    problem = problems[0]
    assert problems[1].startswith(f"job.yaml:{line}: {field}: ")
    assert "bob@example.com" in problems[1]
    assert problem.startswith(f"job.yaml:{line}: {field}: {said}")
    assert "ann@example.com" in problem
    if key == "headers":
        assert "line break" in problem
    code, _, _ = cli(capsys, "run", "job.yaml", "--dry-run", "--out", "out")
    assert code == 2
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.eml"))


@pytest.mark.parametrize(
    ("key", "changed"),
    [("bcc", "other@example.com"), ("envelope_from", "bounces-{{ name }}@example.com")],
)
def test_the_inputs_digest_changes_with_bcc_and_envelope_from(
    tmp_path: Path, key: str, changed: str
) -> None:
    job = make_job(tmp_path, **FIELDS)
    before = api.validate_job(job)[1].digest
    make_job(tmp_path, **{**FIELDS, key: changed})
    after = api.validate_job(job)[1].digest
    assert before != after


def test_a_rerun_with_another_bcc_is_inputs_changed(tmp_path: Path) -> None:
    job = make_job(tmp_path, **FIELDS, retry={"max_attempts": 1})
    first, envelopes = run_recorded(job, defer="bob@example.com")
    assert first.status == "incomplete"  # bob's message is to be retried
    make_job(tmp_path, **{**FIELDS, "bcc": "other@example.com"}, retry={"max_attempts": 1})
    with pytest.raises(InvalidJobError, match="the inputs changed while run"):
        run_recorded(job)
    make_job(tmp_path, **FIELDS, retry={"max_attempts": 1})
    resumed, envelopes = run_recorded(job)
    assert [e.route.recipient for e in envelopes] == ["bob@example.com"]
    assert resumed.exit_code == 0


NAMES = st.text(
    st.characters(
        blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp"),
        blacklist_characters='"\\<>\x85',
    ),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip() == s)
VALUES = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")),
    min_size=1,
    max_size=60,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=NAMES, value=VALUES)
def test_what_validate_accepts_the_dry_run_builds_and_parses_back(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    # Written into the job file, where `$$` is how a literal `$` is written.
    boss, tag = name.replace("$", "$$"), value.replace("$", "$$")
    people = [{"email": "ann@example.com", "name": "Ann", "team": "core", "boss": boss, "tag": tag}]
    job = make_job(
        folder,
        recipients=people,
        attachments=None,
        cc='"{{ boss }}" <boss@example.com>',
        headers={"X-Tag": "{{ tag }}"},
    )
    code, _, err = cli(capsys, "validate", job)
    assert code == 0, err
    out = folder / "out"
    code, _, err = cli(capsys, "run", job, "--dry-run", "--out", out)
    assert code == 0, err
    [eml] = out.glob("*.eml")
    # Decoded by RFC 2047's rules: the email package's address parser keeps the folding space
    # between two encoded-words of a display name, which RFC 2047 6.2 says to drop.
    message = message_from_bytes(eml.read_bytes())
    [(cc_name, cc_address)] = getaddresses([message["Cc"]])
    assert (_decoded(cc_name), cc_address) == (name, "boss@example.com")
    assert _decoded(message["X-Tag"]) == value


def _decoded(raw: str) -> str:
    return str(make_header(decode_header(raw)))


def test_a_copy_differing_only_in_case_is_the_same_person() -> None:
    """The recipients' de-duplication and the suppression lists count `Ann@` and `ann@` as one
    person: so do the copies, so that nobody gets the message twice in one transaction."""
    ann = parse_mailbox("ann@example.com")
    cc = [parse_mailbox("Ann <ANN@Example.com>"), parse_mailbox("Mia@example.com")]
    bcc = [parse_mailbox("mia@EXAMPLE.com"), parse_mailbox("archive@example.com")]

    copies = copies_of(ann, cc, bcc)

    assert [box.envelope_address for box in copies] == ["Mia@example.com", "archive@example.com"]
