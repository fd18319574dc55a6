"""The sample bucket of a correlation id, computed by the writers (issue #23).

A day's hash sample keeps, per population, the rows whose correlation id hashes into a
bucket below a threshold (``domain.collect.sample_thresholds``; buckets 0..9999). Each
engine has hashed the id at read time with a function of its own, and still does for rows
written without a bucket:

- PostgreSQL: ``mod(abs(hashtext(correlation_id)::bigint), 10000)``;
- SQLite: the first 4 bytes of BLAKE2b of the UTF-8 id, big-endian, mod 10000 (``store.engine``);
- Spark over the lake: ``pmod(xxhash64(correlation_id), 10000)`` (seed 42).

The writers store the same number in ``sample_bucket`` (the database's function for the
database they write to, Spark's for the lake), so a row's sample membership is the same
whether its bucket was stored or is hashed when read, and a day mixing both kinds of rows is
sampled exactly as before. ``hashtext`` is PostgreSQL's ``hash_bytes`` (Bob Jenkins' lookup3,
little-endian byte order) and ``xxhash64`` Spark's XXH64; both are computed here with numpy on
a whole column at once (ids grouped by byte length). Checked against the engines:
``store_tests/test_logs.py`` (the stored bucket is the database's own hash, PostgreSQL and
SQLite) and ``test_spark_equivalence.py`` (a lake day written with buckets and without is
sampled alike).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rollout_pipeline.domain.scan_rows import HASH_BUCKETS, blake2b_bucket

_U32 = np.uint32
_U64 = np.uint64


def _group_by_length(ids: Sequence[str | None]) -> tuple[list[int | None], dict[int, tuple[list[int], list[bytes]]]]:
    out: list[int | None] = [None] * len(ids)
    lengths = set(map(len, ids)) if None not in ids else ()
    if len(lengths) == 1:  # the common case (UUIDs): one length; ASCII keeps it in bytes
        text = "".join(ids)
        if text.isascii():
            (length,) = lengths
            return out, {length: (range(len(ids)), [text.encode("ascii")])}
    groups: dict[int, tuple[list[int], list[bytes]]] = {}
    for i, cid in enumerate(ids):
        if cid is None:
            continue
        raw = cid.encode("utf-8", "surrogatepass")
        positions, values = groups.setdefault(len(raw), ([], []))
        positions.append(i)
        values.append(raw)
    return out, groups


def _matrix(values: list[bytes], length: int, width: int) -> np.ndarray:
    """The ids as an (n, width) uint8 matrix, zero-padded on the right."""
    joined = b"".join(values)
    n = len(joined) // length if length else len(values)
    m = np.zeros((n, width), dtype=np.uint8)
    if length:
        m[:, :length] = np.frombuffer(joined, dtype=np.uint8).reshape(n, length)
    return m


# --- PostgreSQL's hashtext (src/common/hashfn.c, hash_bytes) -----------------------------------

def _rot32(x, k):
    return (x << _U32(k)) | (x >> _U32(32 - k))


def _mix(a, b, c):
    a -= c; a ^= _rot32(c, 4); c += b  # noqa: E702
    b -= a; b ^= _rot32(a, 6); a += c  # noqa: E702
    c -= b; c ^= _rot32(b, 8); b += a  # noqa: E702
    a -= c; a ^= _rot32(c, 16); c += b  # noqa: E702
    b -= a; b ^= _rot32(a, 19); a += c  # noqa: E702
    c -= b; c ^= _rot32(b, 4); b += a  # noqa: E702
    return a, b, c


def _final(a, b, c):
    c ^= b; c -= _rot32(b, 14)  # noqa: E702
    a ^= c; a -= _rot32(c, 11)  # noqa: E702
    b ^= a; b -= _rot32(a, 25)  # noqa: E702
    c ^= b; c -= _rot32(b, 16)  # noqa: E702
    a ^= c; a -= _rot32(c, 4)  # noqa: E702
    b ^= a; b -= _rot32(a, 14)  # noqa: E702
    c ^= b; c -= _rot32(b, 24)  # noqa: E702
    return c


def _hashtext(values: list[bytes], length: int) -> np.ndarray:
    words = -(-length // 12) * 3 or 3
    w = np.ascontiguousarray(_matrix(values, length, words * 4).view("<u4").T)  # (words, n) little-endian
    start = _U32((0x9E3779B9 + length + 3923095) & 0xFFFFFFFF)
    n = w.shape[1]
    a, b, c = (np.full(n, start, dtype=_U32) for _ in range(3))
    with np.errstate(over="ignore"):
        full, rest = divmod(length, 12)
        for block in range(full):
            a += w[3 * block]
            b += w[3 * block + 1]
            c += w[3 * block + 2]
            a, b, c = _mix(a, b, c)
        if rest:  # the last 1..11 bytes; c's lowest byte is skipped (zero-padded words, c shifted by one byte)
            a += w[3 * full]
            b += w[3 * full + 1]
            c += w[3 * full + 2] << _U32(8)
        c = _final(a, b, c)
    signed = c.astype(np.int32).astype(np.int64)
    return np.abs(signed) % HASH_BUCKETS


def _buckets(ids: Sequence[str | None], kernel) -> list[int | None]:
    """``kernel(values, length)`` over the ids grouped by their UTF-8 length, back in the ids' order."""
    out, groups = _group_by_length(ids)
    for length, (positions, values) in groups.items():
        found = kernel(values, length).tolist()
        if isinstance(positions, range):
            return found
        for i, v in zip(positions, found):
            out[i] = v
    return out


def hashtext_buckets(ids: Sequence[str | None]) -> list[int | None]:
    """``mod(abs(hashtext(id)::bigint), 10000)`` of each id as PostgreSQL computes it (None for None)."""
    return _buckets(ids, _hashtext)


# --- SQLite's (store.engine registers it as rp_hash_bucket) --------------------------------------

def blake2b_buckets(ids: Sequence[str | None]) -> list[int | None]:
    return list(map(blake2b_bucket, ids))


# --- Spark's xxhash64 (XXH64, seed 42, over the UTF-8 bytes) --------------------------------------

_P1, _P2, _P3, _P4, _P5 = (_U64(p) for p in (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                                              0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5))
_SEED = _U64(42)


def _rot64(x, k):
    return (x << _U64(k)) | (x >> _U64(64 - k))


def _round(acc, lane):
    acc = acc + lane * _P2
    return _rot64(acc, 31) * _P1


def _xxhash64(values: list[bytes], length: int) -> np.ndarray:
    m = _matrix(values, length, -(-length // 8) * 8 or 8)
    n = m.shape[0]
    lanes = np.ascontiguousarray(m.view("<u8").T)  # (words, n)
    with np.errstate(over="ignore"):
        offset = 0
        if length >= 32:
            v1 = np.full(n, _SEED + _P1 + _P2, dtype=_U64)
            v2 = np.full(n, _SEED + _P2, dtype=_U64)
            v3 = np.full(n, _SEED, dtype=_U64)
            v4 = np.full(n, _SEED - _P1, dtype=_U64)
            while offset + 32 <= length:
                j = offset // 8
                v1, v2 = _round(v1, lanes[j]), _round(v2, lanes[j + 1])
                v3, v4 = _round(v3, lanes[j + 2]), _round(v4, lanes[j + 3])
                offset += 32
            h = _rot64(v1, 1) + _rot64(v2, 7) + _rot64(v3, 12) + _rot64(v4, 18)
            for v in (v1, v2, v3, v4):
                h = (h ^ _round(np.zeros(n, dtype=_U64), v)) * _P1 + _P4
        else:
            h = np.full(n, _SEED + _P5, dtype=_U64)
        h = h + _U64(length)
        while offset + 8 <= length:
            h ^= _round(np.zeros(n, dtype=_U64), lanes[offset // 8])
            h = _rot64(h, 27) * _P1 + _P4
            offset += 8
        if offset + 4 <= length:
            word = (m[:, offset].astype(_U64) | (m[:, offset + 1].astype(_U64) << _U64(8))
                    | (m[:, offset + 2].astype(_U64) << _U64(16)) | (m[:, offset + 3].astype(_U64) << _U64(24)))
            h ^= word * _P1
            h = _rot64(h, 23) * _P2 + _P3
            offset += 4
        while offset < length:
            h ^= m[:, offset].astype(_U64) * _P5
            h = _rot64(h, 11) * _P1
            offset += 1
        h ^= h >> _U64(33)
        h *= _P2
        h ^= h >> _U64(29)
        h *= _P3
        h ^= h >> _U64(32)
    return h.view(np.int64) % HASH_BUCKETS  # pmod: numpy's % takes the divisor's sign, as Python's


def xxhash64_buckets(ids: Sequence[str | None]) -> list[int | None]:
    """``pmod(xxhash64(id), 10000)`` of each id as Spark computes it (None for None)."""
    return _buckets(ids, _xxhash64)
