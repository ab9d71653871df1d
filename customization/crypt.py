"""Password hashing for /etc/shadow: SHA-crypt in pure Python, other methods through the host's libxcrypt."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import hmac
import secrets
import threading

from customization.errors import ParameterError, ToolError

_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PREFIX = {
    "md5": "$1$",
    "sha1": "$sha1$",
    "blowfish": "$2b$",
    "sha256": "$5$",
    "sha512": "$6$",
    "yescrypt": "$y$",
}
_DEFAULT_ROUNDS = 5000
_LIB_LOCK = threading.Lock()


def _encode24(b2: int, b1: int, b0: int, chars: int) -> str:
    word = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(chars):
        out.append(_ALPHABET[word & 0x3F])
        word >>= 6
    return "".join(out)


def _sha_encode(digest: bytes, size: int) -> str:
    """SHA-crypt's transposed base64: byte triples taken a third of the digest apart, rotating."""
    step = size // 3
    parts = []
    for i in range(step):
        a, b, c = digest[i], digest[i + step], digest[i + 2 * step]
        if size == 64:
            triple = ((a, b, c), (b, c, a), (c, a, b))[i % 3]
        else:
            triple = ((a, b, c), (c, a, b), (b, c, a))[i % 3]
        parts.append(_encode24(*triple, 4))
    if size == 64:
        parts.append(_encode24(0, 0, digest[63], 2))
    else:
        parts.append(_encode24(0, digest[31], digest[30], 3))
    return "".join(parts)


def _repeat(block: bytes, length: int) -> bytes:
    return (block * (length // len(block) + 1))[:length]


def sha_crypt(password: bytes, salt: str, rounds: int | None = None, size: int = 64) -> str:
    """SHA-512 (``size=64``, ``$6$``) or SHA-256 (``size=32``, ``$5$``) crypt, as glibc/libxcrypt do it."""
    algo = hashlib.sha512 if size == 64 else hashlib.sha256
    salt_b = salt.encode()[:16]
    explicit = rounds is not None
    count = min(max(rounds if rounds is not None else _DEFAULT_ROUNDS, 1000), 999_999_999)
    alt = algo(password + salt_b + password).digest()
    ctx = algo(password + salt_b)
    ctx.update(_repeat(alt, len(password)))
    n = len(password)
    while n:
        ctx.update(alt if n & 1 else password)
        n >>= 1
    first = ctx.digest()
    p_bytes = _repeat(algo(password * len(password)).digest(), len(password))
    s_bytes = _repeat(algo(salt_b * (16 + first[0])).digest(), len(salt_b))
    digest = first
    for i in range(count):
        step = algo(p_bytes if i & 1 else digest)
        if i % 3:
            step.update(s_bytes)
        if i % 7:
            step.update(p_bytes)
        step.update(digest if i & 1 else p_bytes)
        digest = step.digest()
    head = "$6$" if size == 64 else "$5$"
    if explicit:
        head += f"rounds={count}$"
    return f"{head}{salt_b.decode()}${_sha_encode(digest, size)}"


def _parse_sha(hashed: str) -> tuple[int, int | None, str]:
    size = 64 if hashed.startswith("$6$") else 32
    fields = hashed.split("$")[2:]
    rounds = None
    if fields and fields[0].startswith("rounds="):
        rounds = int(fields.pop(0)[len("rounds=") :])
    return size, rounds, fields[0] if fields else ""


@functools.lru_cache(maxsize=1)
def _libcrypt() -> ctypes.CDLL:
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as e:
        raise ToolError("libcrypt (libxcrypt) is not available; install libcrypt1") from e
    lib.crypt_rn.restype = ctypes.c_char_p
    lib.crypt_rn.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int)
    lib.crypt_gensalt_rn.restype = ctypes.c_char_p
    lib.crypt_gensalt_rn.argtypes = (
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
    )
    return lib


def libcrypt(password: bytes, setting: str, lib: ctypes.CDLL | None = None) -> str:
    """crypt(3) through libxcrypt's ``crypt_rn`` (the password stays in this process's memory)."""
    lib = lib or _libcrypt()
    data = ctypes.create_string_buffer(1 << 16)
    with _LIB_LOCK:
        out = lib.crypt_rn(password, setting.encode(), data, len(data))
    if not out:
        raise ParameterError(f"libcrypt cannot hash with setting {setting.split('$')[1]!r}")
    return out.decode()


def _gensalt(prefix: str) -> str:
    lib = _libcrypt()
    out = ctypes.create_string_buffer(256)
    entropy = secrets.token_bytes(32)
    if not lib.crypt_gensalt_rn(prefix.encode(), 0, entropy, len(entropy), out, len(out)):
        raise ParameterError(f"libcrypt cannot make a salt for {prefix!r}")
    return out.value.decode()


def hash_password(password: str, method: str = "sha512") -> str:
    """Hash ``password`` with a PASSWD_HASHING_METHOD (sha512 by default, as snf-image does for Linux)."""
    if method not in _PREFIX:
        raise ParameterError(f"unknown password hashing method {method!r}")
    raw = password.encode()
    if method in ("sha512", "sha256"):
        salt = "".join(secrets.choice(_ALPHABET) for _ in range(16))
        return sha_crypt(raw, salt, None, 64 if method == "sha512" else 32)
    return libcrypt(raw, _gensalt(_PREFIX[method]))


def verify_password(password: str, hashed: str, lib: ctypes.CDLL | None = None) -> bool:
    """True when ``password`` matches ``hashed``; ``lib`` may be another libcrypt (e.g. the guest's)."""
    raw = password.encode()
    if lib is None and hashed.startswith(("$6$", "$5$")):
        size, rounds, salt = _parse_sha(hashed)
        computed = sha_crypt(raw, salt, rounds, size)
    else:
        computed = libcrypt(raw, hashed, lib)
    return hmac.compare_digest(computed, hashed)
