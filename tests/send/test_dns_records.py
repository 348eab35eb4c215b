"""The DNS records `check` judges, as any TXT text may read, and the `--dns` resolver address."""

from __future__ import annotations

import base64
from functools import cache

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dkimsupport import DOMAIN, SELECTOR, make_dkim_key
from hypothesis import given
from hypothesis import strategies as st

from batchmail.errors import InvalidJobError
from batchmail.load.settings import DkimSettings
from batchmail.send.dns_checks import dkim_key, dmarc, spf
from batchmail.transport.dns_lookup import TxtAnswer, resolver_address

KEY_NAME = f"{SELECTOR}._domainkey.{DOMAIN}"
STATUSES = {"ok", "warn", "fail"}


@cache
def settings() -> DkimSettings:
    key = make_dkim_key()
    return DkimSettings(DOMAIN, SELECTOR, key.private_pem, key_source="keys/dkim.pem")


def _found(name: str, *texts: str) -> TxtAnswer:
    return TxtAnswer(name, "found", texts)


tag_text = st.lists(
    st.tuples(
        st.sampled_from(["v", "k", "p", "adkim", "sp", "t", "h", "V", " p "]),
        st.one_of(
            st.sampled_from(["DKIM1", "DMARC1", "rsa", "ed25519", "reject", "none", "s", "r"]),
            st.text(max_size=30),
            st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode("ascii")),
        ),
    ),
    max_size=6,
).map(lambda tags: "; ".join(f"{tag}={value}" for tag, value in tags))
txt = st.one_of(st.text(max_size=200), tag_text, tag_text.map(lambda t: "v=spf1 " + t))
answers = st.lists(txt, max_size=4).map(tuple)


@given(answers)
def test_any_spf_answer_is_judged_never_raised(texts: tuple[str, ...]) -> None:
    check = spf(DOMAIN, _found(DOMAIN, *texts))
    assert check.check == "spf"
    assert check.status in STATUSES
    assert "\n" not in check.detail


@given(answers, st.sampled_from([None, "example.com", "mail.example.com", "example.net"]))
def test_any_dmarc_answer_is_judged_never_raised(
    texts: tuple[str, ...], signer: str | None
) -> None:
    check = dmarc(DOMAIN, _found(f"_dmarc.{DOMAIN}", *texts), signer)
    assert check.check == "dmarc"
    assert check.status in STATUSES
    assert "\n" not in check.detail


@given(answers)
def test_any_dkim_answer_is_judged_never_raised(texts: tuple[str, ...]) -> None:
    check = dkim_key(_found(KEY_NAME, *texts), settings())
    assert check.check == "dkim"
    assert check.status in STATUSES
    assert "\n" not in check.detail
    assert "PRIVATE" not in check.detail


def test_the_key_as_a_bare_rsa_public_key_matches_too() -> None:
    private = serialization.load_pem_private_key(settings().private_key, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    bare = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    record = "v=DKIM1; k=rsa; p=" + base64.b64encode(bare).decode("ascii")
    # Long keys are published as several strings; whitespace inside p= is allowed (RFC 6376 3.2).
    spaced = record[:60] + " " + record[60:]

    check = dkim_key(_found(KEY_NAME, spaced), settings())

    assert check.status == "ok", check.detail


@pytest.mark.parametrize(
    ("record", "says"),
    [
        ("v=DKIM1; k=rsa; p=", "is revoked (empty p=)"),
        ("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "is k=ed25519"),
        ("v=DKIM1; k=rsa; p=bm90IGEga2V5", "p= is not an RSA public key"),
        ("v=DKIM1; k=rsa; p=!!", "p= is not an RSA public key"),
        ("v=spf1 -all", "no DKIM key"),
    ],
)
def test_a_key_record_that_cannot_verify_fails(record: str, says: str) -> None:
    check = dkim_key(_found(KEY_NAME, record), settings())

    assert check.status == "fail"
    assert says in check.detail


@pytest.mark.parametrize(
    ("texts", "status", "says"),
    [
        (("v=DMARC1; p=reject", "v=DMARC1; p=none"), "warn", "2 DMARC records"),
        (("v=DMARC1; rua=mailto:d@example.com",), "warn", "no p=, not a policy"),
        (("p=reject; v=DMARC1",), "warn", "no DMARC record"),
        (("v=DMARC1; p=Quarantine",), "ok", "p=quarantine"),
    ],
)
def test_dmarc_records(texts: tuple[str, ...], status: str, says: str) -> None:
    check = dmarc(DOMAIN, _found(f"_dmarc.{DOMAIN}", *texts), DOMAIN)

    assert check.status == status
    assert says in check.detail


def test_a_subdomain_under_its_parents_record_gets_sp() -> None:
    answer = _found("_dmarc.example.com", "v=DMARC1; p=reject; sp=none")

    check = dmarc("news.example.com", answer, "news.example.com")

    assert check.status == "warn"
    assert "_dmarc.example.com: sp=none" in check.detail


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[0:0::1]:53", ("::1", 53)),
    ],
)
def test_resolver_addresses(text: str, address: tuple[str, int]) -> None:
    assert resolver_address(text) == address


@given(st.text(max_size=40))
def test_any_resolver_text_is_an_address_or_one_line_of_refusal(text: str) -> None:
    refusal: list[str] = []
    try:
        host, port = resolver_address(text)
    except InvalidJobError as exc:
        refusal = exc.lines()
    if refusal:
        assert len(refusal) == 1
        assert refusal[0].startswith("--dns: ")
    else:
        assert 0 < port < 65536
        assert host
