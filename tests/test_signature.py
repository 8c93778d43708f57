from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from daemon.whatsapp.signature import SIGNATURE_HEADER, sign, verify

SECRET = "app-secret-123"
BODY = json.dumps({"object": "whatsapp_business_account", "name": "äöå"}).encode()


def test_sign_is_hmac_sha256_of_the_raw_bytes_with_prefix() -> None:
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET) == f"sha256={expected}"
    assert SIGNATURE_HEADER == "X-Hub-Signature-256"


def test_signature_is_over_escaped_unicode_bytes_as_meta_sends_them() -> None:
    body = json.dumps({"name": "äöå"}, ensure_ascii=True).encode()
    assert b"\\u00e4\\u00f6\\u00e5" in body
    assert verify(body, sign(body, SECRET), SECRET)
    reserialised = json.dumps(json.loads(body), ensure_ascii=False).encode()
    assert not verify(reserialised, sign(body, SECRET), SECRET)


def test_verify_accepts_own_signature_and_uppercase_hex() -> None:
    header = sign(BODY, SECRET)
    assert verify(BODY, header, SECRET)
    assert verify(BODY, "sha256=" + header.removeprefix("sha256=").upper(), SECRET)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256",
        "sha1=" + hashlib.sha1(BODY).hexdigest(),
        "sha256=" + "0" * 64,
        "sha256=not-hex-at-all",
        "sha256=ü" + "0" * 63,
    ],
)
def test_verify_rejects_missing_malformed_or_wrong_signatures(header: str | None) -> None:
    assert not verify(BODY, header, SECRET)


def test_verify_rejects_a_tampered_body_and_a_wrong_secret() -> None:
    header = sign(BODY, SECRET)
    assert not verify(BODY + b" ", header, SECRET)
    assert not verify(BODY, header, "other-secret")


def test_empty_secret_never_signs_nor_verifies() -> None:
    with pytest.raises(ValueError):
        sign(BODY, "")
    assert not verify(BODY, sign(BODY, SECRET), "")
