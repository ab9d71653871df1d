"""Password hashing: pure-Python SHA-crypt against libxcrypt, and every PASSWD_HASHING_METHOD."""

from __future__ import annotations

import pytest

from customization import crypt


@pytest.mark.parametrize("size", [64, 32])
@pytest.mark.parametrize("rounds", [None, 1000, 6789])
@pytest.mark.parametrize("password", [b"", b"Hello world!", b"x" * 80, "pässwörd".encode()])
def test_sha_crypt_matches_libxcrypt(size: int, rounds: int | None, password: bytes) -> None:
    salt = "saltstring0123"
    head = ("$6$" if size == 64 else "$5$") + (f"rounds={rounds}$" if rounds else "")
    assert crypt.sha_crypt(password, salt, rounds, size) == crypt.libcrypt(password, head + salt)


def test_published_sha512_vector() -> None:
    # The example from the SHA-crypt specification.
    assert crypt.sha_crypt(b"Hello world!", "saltstring") == (
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
    )


@pytest.mark.parametrize(
    ("method", "prefix"),
    [
        ("sha512", "$6$"),
        ("sha256", "$5$"),
        ("yescrypt", "$y$"),
        ("md5", "$1$"),
        ("blowfish", "$2b$"),
        ("sha1", "$sha1$"),
    ],
)
def test_every_method_hashes_and_verifies(method: str, prefix: str) -> None:
    hashed = crypt.hash_password("s3cret pw", method)
    assert hashed.startswith(prefix)
    assert crypt.verify_password("s3cret pw", hashed)
    assert not crypt.verify_password("s3cret pW", hashed)
    assert crypt.hash_password("s3cret pw", method) != hashed  # a fresh salt each time
