"""The fake's signature checks agree with what the real duo_client signs (pure)."""

from __future__ import annotations

import email.utils
import hashlib
import time

import duo_client.client
from hypothesis import given
from hypothesis import strategies as st

from trio_dls.fakeduo.signing import (
    BAD_DATE,
    BAD_SIGNATURE,
    MISSING_CREDENTIALS,
    UNKNOWN_IKEY,
    Credentials,
    SignedRequest,
    canonical_params,
    canonical_request,
    verify_request,
)

CREDS = Credentials("DIABCDEFGHIJKLMNOPQR", "s3cret-skey")
INTEGRATIONS = {CREDS.ikey: CREDS}
PARAMS = {"mintime": ["1700000000000"], "next_offset": ["1700000000001", "txid-ü"]}


def _request(date: str, params: dict[str, list[str]] | None = None) -> SignedRequest:
    return SignedRequest(
        method="GET",
        host="localhost",
        path="/admin/v2/logs/authentication",
        params=PARAMS if params is None else params,
        body=b"",
        date=date,
    )


def _duo_client_auth(
    date: str, sig_version: int, digestmod: object = hashlib.sha512
) -> str:
    encoded = duo_client.client.normalize_params(PARAMS)
    return str(
        duo_client.client.sign(
            CREDS.ikey,
            CREDS.skey,
            "GET",
            "localhost",
            "/admin/v2/logs/authentication",
            date,
            sig_version,
            encoded,
            body="" if sig_version in (4, 5) else None,
            digestmod=digestmod,
        )
    )


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.lists(st.text(max_size=8), min_size=1, max_size=3),
        max_size=4,
    )
)
def test_canonical_params_match_duo_client(params: dict[str, list[str]]) -> None:
    """Any parameters canonicalise exactly as duo_client canonicalises them."""
    expected = duo_client.client.canon_params(
        duo_client.client.normalize_params(params)
    )
    assert expected == canonical_params(params)


def test_canonical_request_matches_duo_client_for_v2_v4_v5() -> None:
    """The canonical string of each signature version is duo_client's."""
    date = email.utils.formatdate()
    encoded = duo_client.client.normalize_params(PARAMS)
    for version in (2, 4, 5):
        expected = duo_client.client.canonicalize(
            "GET",
            "localhost",
            "/admin/v2/logs/authentication",
            encoded,
            date,
            version,
            body="",
        )
        assert expected == canonical_request(_request(date), version)


def test_duo_client_signatures_of_every_version_verify() -> None:
    """v5, v4, v2-SHA512 and v2-SHA1 signatures made by duo_client are accepted."""
    date = email.utils.formatdate()
    for version, digestmod in (
        (5, hashlib.sha512),
        (4, hashlib.sha512),
        (2, hashlib.sha512),
        (2, hashlib.sha1),
    ):
        auth = _duo_client_auth(date, version, digestmod)
        verdict = verify_request(
            _request(date), auth, INTEGRATIONS, now=time.time(), max_skew=300
        )
        assert verdict == CREDS


def test_wrong_skey_is_a_bad_signature() -> None:
    """A signature made with another secret key is refused with 40103."""
    date = email.utils.formatdate()
    auth = _duo_client_auth(date, 5)
    wrong = {CREDS.ikey: Credentials(CREDS.ikey, "another-skey")}
    verdict = verify_request(_request(date), auth, wrong, now=None, max_skew=None)
    assert verdict == BAD_SIGNATURE


def test_unknown_ikey_is_refused_before_the_signature() -> None:
    """An integration key the server does not know is refused as such."""
    date = email.utils.formatdate()
    auth = _duo_client_auth(date, 5)
    verdict = verify_request(_request(date), auth, {}, now=None, max_skew=None)
    assert verdict == UNKNOWN_IKEY


def test_tampered_parameter_is_a_bad_signature() -> None:
    """Changing a parameter after signing breaks the signature."""
    date = email.utils.formatdate()
    auth = _duo_client_auth(date, 5)
    tampered = _request(date, {**PARAMS, "mintime": ["0"]})
    verdict = verify_request(tampered, auth, INTEGRATIONS, now=None, max_skew=None)
    assert verdict == BAD_SIGNATURE


def test_date_within_skew_is_accepted_and_beyond_it_refused() -> None:
    """A Date 70 s old passes a 300 s skew check; one 301 s old does not."""
    now = time.time()
    old = email.utils.formatdate(now - 70)
    older = email.utils.formatdate(now - 301)
    assert (
        verify_request(
            _request(old), _duo_client_auth(old, 5), INTEGRATIONS, now=now, max_skew=300
        )
        == CREDS
    )
    assert (
        verify_request(
            _request(older),
            _duo_client_auth(older, 5),
            INTEGRATIONS,
            now=now,
            max_skew=300,
        )
        == BAD_DATE
    )


def test_missing_or_malformed_authorization_is_missing_credentials() -> None:
    """No Authorization header, or one that is not Basic ikey:sig, is 40101."""
    date = email.utils.formatdate()
    for header in (None, "Bearer x", "Basic !!!", "Basic Zm9v"):
        verdict = verify_request(
            _request(date), header, INTEGRATIONS, now=None, max_skew=None
        )
        assert verdict == MISSING_CREDENTIALS
