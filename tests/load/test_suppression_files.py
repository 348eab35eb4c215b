"""Suppression files: their formats, their errors, and how a recipient is matched (by address or
by `@domain`, case-insensitive, either form of an IDN)."""

from __future__ import annotations

from pathlib import Path

import idna
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from support import run_cli, write_job_file

from batchmail.errors import InvalidJobError
from batchmail.load.addresses import AddressError, Mailbox, mailbox
from batchmail.load.job import load_job
from batchmail.load.suppression import Suppression, load_suppression

JOB = """\
version: 1
from: "Bot <bot@example.com>"
subject: "Hello {{ name }}"
template:
  text: body.txt.j2
recipients:
  - email: alice@example.com
    name: Alice
  - email: bob@example.org
    name: Bob
smtp:
  host: 127.0.0.1
  security: none
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def suppression_of(root: Path, files: dict[str, str | bytes]) -> Suppression:
    names = ", ".join(files)
    path = write_job_file(
        root, JOB + f"suppress: [{names}]\n", {"body.txt.j2": "Hi {{ name }}\n", **files}
    )
    return load_suppression(load_job(path, environ={}))


def suppressed(suppression: Suppression, address: str) -> bool:
    return suppression.listed(mailbox(address)) is not None


def test_a_text_file_lists_addresses_and_domains_with_comments_and_blank_lines(
    tmp_path: Path,
) -> None:
    text = "# unsubscribed\n\nalice@example.com\r\n  @Spam.Example  \n# @example.org\n"
    suppression = suppression_of(tmp_path, {"unsub.txt": text.encode("utf-8-sig")})
    assert suppressed(suppression, "alice@example.com")
    assert suppressed(suppression, "Alice@EXAMPLE.com")  # the same person, in any case
    assert suppressed(suppression, "anyone@spam.example")
    assert suppressed(suppression, "x@SPAM.EXAMPLE")
    assert not suppressed(suppression, "bob@example.org")  # only in a comment
    assert not suppressed(suppression, "alice@example.org")
    assert not suppressed(suppression, "anyone@sub.spam.example")  # a domain, not its subdomains
    assert suppression.listed(mailbox("alice@example.com")) == "unsub.txt:3"
    assert suppression.listed(mailbox("x@spam.example")) == "unsub.txt:4"


def test_a_csv_file_takes_its_email_column(tmp_path: Path) -> None:
    text = "name,Email,reason\nAlice,alice@example.com,unsubscribed\nSpam,@spam.example,\nX,,\n"
    suppression = suppression_of(tmp_path, {"unsub.csv": text})
    assert suppressed(suppression, "alice@example.com")
    assert suppressed(suppression, "a@spam.example")
    assert suppression.listed(mailbox("a@spam.example")) == "unsub.csv:3"


@pytest.mark.parametrize(
    "text", ["alice@example.com,2024-01-01\n@spam.example\n", "address,when\nalice@example.com,x\n"]
)
def test_a_csv_file_without_an_email_column_takes_its_first(tmp_path: Path, text: str) -> None:
    suppression = suppression_of(tmp_path, {"unsub.csv": text})
    assert suppressed(suppression, "alice@example.com")
    assert not suppressed(suppression, "bob@example.org")


def test_several_files_add_up(tmp_path: Path) -> None:
    suppression = suppression_of(
        tmp_path, {"a.txt": "alice@example.com\n", "b.csv": "email\nbob@example.org\n"}
    )
    assert suppressed(suppression, "alice@example.com")
    assert suppressed(suppression, "bob@example.org")
    assert suppression.count([mailbox("alice@example.com"), mailbox("carol@example.com")]) == 1


def test_an_idn_matches_in_either_form_both_ways(tmp_path: Path) -> None:
    suppression = suppression_of(
        tmp_path, {"unsub.txt": "@BÜCHER.example\njö@xn--mnchen-3ya.example\n"}
    )
    assert suppressed(suppression, "anyone@xn--bcher-kva.example")
    assert suppressed(suppression, "anyone@bücher.example")
    assert suppressed(suppression, "jö@münchen.example")
    assert suppressed(suppression, "jö@MÜNCHEN.example")
    assert not suppressed(suppression, "jo@münchen.example")


@pytest.mark.parametrize(
    ("text", "line", "shown"),
    [
        ("alice@example.com\nnot an address\n", 2, "'not an address' is not a valid address"),
        ("# list\n@\n", 2, "'@' is not a valid @domain"),
        ("Alice <alice@example.com>\n", 1, "'Alice <alice@example.com>' is not a valid address"),
        ("a@example.com\n@exa mple.com\n", 2, "'@exa mple.com' is not a valid @domain"),
    ],
)
def test_a_line_that_is_neither_an_address_nor_a_domain_is_a_job_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, shown: str
) -> None:
    write_job_file(
        tmp_path,
        JOB + "suppress: lists/unsub.txt\n",
        {"body.txt.j2": "Hi\n", "lists/unsub.txt": text},
    )
    result = run_cli(capsys, "validate", "job.yaml")
    assert result.code == 2
    assert result.err.startswith(f"lists/unsub.txt:{line}: suppress: {shown}")
    assert "one address (user@example.com) or one domain (@example.com)" in result.err
    assert "Traceback" not in result.err


def test_a_missing_file_is_a_job_error_naming_the_key_and_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job_file(tmp_path, JOB + "suppress: [lists/gone.txt]\n", {"body.txt.j2": "Hi\n"})
    result = run_cli(capsys, "run", "job.yaml", "--dry-run", "--out", "out")
    assert result.code == 2
    assert result.err.strip() == (
        "job.yaml:14: suppress: cannot read the suppression file lists/gone.txt: "
        "No such file or directory"
    )
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.eml"))


def test_a_file_not_in_utf8_is_a_job_error_naming_its_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidJobError) as caught:
        suppression_of(
            tmp_path, {"unsub.txt": "a@example.com\n\nj\xf6@example.com\n".encode("latin-1")}
        )
    assert str(caught.value) == "unsub.txt:3: suppress: not UTF-8 text: save the file as UTF-8"


# --- matching, for any address: by address and by domain, either IDN form, any domain case ---

# Letters of several scripts, as people's names and domains hold them. No ß or ς: IDNA 2008 and
# the case mappings of Unicode do not agree on them, so that their upper case is another domain.
_LETTERS = "abcdefghijklmnopqrstuvwxyzäöüéèñçøåæœłžščğıяжшщюбгдфλμπω日本語中文한국어"  # noqa: RUF001
_LABEL = st.text(alphabet=_LETTERS + "0123456789", min_size=1, max_size=12)
_LOCAL = st.text(
    alphabet=st.characters(categories=["Ll", "Lu", "Lo", "Nd"], max_codepoint=0xFFFF),
    min_size=1,
    max_size=20,
)


def _case_variant(text: str, flips: list[bool]) -> str:
    """`text` with some letters in upper case: those whose upper case is the same letter (not
    the dotless i, whose upper case I is another letter's)."""
    return "".join(
        c.upper() if flip and c.upper().lower() == c else c
        for c, flip in zip(text, flips + [False] * len(text), strict=False)
    )


def _box(address: str) -> Mailbox:
    try:
        return mailbox(address)
    except AddressError:
        assume(False)
        raise


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    local=_LOCAL,
    labels=st.lists(_LABEL, min_size=1, max_size=2),
    flips=st.lists(st.booleans(), max_size=40),
    listed_as_alabel=st.booleans(),
    recipient_as_alabel=st.booleans(),
    by_domain=st.booleans(),
)
def test_a_recipient_is_matched_by_address_or_domain_in_either_form_and_case(
    tmp_path: Path,
    local: str,
    labels: list[str],
    flips: list[bool],
    listed_as_alabel: bool,
    recipient_as_alabel: bool,
    by_domain: bool,
) -> None:
    unicode_domain = ".".join(labels) + ".example"
    try:
        ascii_domain = idna.encode(unicode_domain).decode()
    except idna.IDNAError:
        assume(False)
        raise
    recipient = _box(f"{local}@{ascii_domain if recipient_as_alabel else unicode_domain}")
    listed_domain = _case_variant(ascii_domain if listed_as_alabel else unicode_domain, flips)
    entry = f"@{listed_domain}" if by_domain else f"{local}@{listed_domain}"
    other = _box(f"{local}x@other.example")
    suppression = suppression_of(tmp_path, {"unsub.txt": f"# list\n{entry}\n"})
    assert suppression.listed(recipient) == "unsub.txt:2"
    assert suppression.listed(other) is None
