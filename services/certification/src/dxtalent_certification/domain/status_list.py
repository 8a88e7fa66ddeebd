"""W3C Bitstring Status List: which issued credentials are revoked, as one compressed bitstring.

Each credential gets an index when it is issued (`status_index`, counted from 0 across the
issuer's lists); list `n` (from 1) holds indexes `(n-1)*LIST_SIZE ... n*LIST_SIZE-1`. Bit `i`
of a list is the `i % LIST_SIZE`-th bit, most significant bit of the first byte first, as the
specification counts; 1 means revoked. `encode` gzips the bitstring (no timestamp, so the same
bits always encode the same) and writes it multibase base64url (`u` prefix, no padding).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import zlib
from collections.abc import Iterable
from typing import Any

from dxtalent_certification.domain.issuer import VC_CONTEXT, Issuer

#: Bits per list: 16 KiB, the specification's minimum, so one revocation hides among many.
LIST_SIZE = 131_072
STATUS_PURPOSE = "revocation"


class StatusListError(ValueError):
    """An encoded list that is not gzip + base64url of a bitstring, or an index outside it."""


def list_number(status_index: int) -> int:
    """The list (from 1) that holds `status_index`."""
    return status_index // LIST_SIZE + 1


def list_url(issuer_id: str, number: int) -> str:
    """Where the issuer serves list `number`."""
    return f"{issuer_id}/credentials/status/{number}"


def status_entry(issuer_id: str, status_index: int) -> dict[str, Any]:
    """The `credentialStatus` of the credential at `status_index`."""
    url = list_url(issuer_id, list_number(status_index))
    bit = status_index % LIST_SIZE
    return {
        "id": f"{url}#{bit}",
        "type": "BitstringStatusListEntry",
        "statusPurpose": STATUS_PURPOSE,
        "statusListIndex": str(bit),
        "statusListCredential": url,
    }


def encode(set_bits: Iterable[int], size: int = LIST_SIZE) -> str:
    """The bitstring of `size` bits with `set_bits` set, gzipped, multibase base64url."""
    bits = bytearray(size // 8)
    for i in set_bits:
        if not 0 <= i < size:
            raise StatusListError(f"status index {i} is outside a list of {size} bits")
        bits[i // 8] |= 0x80 >> (i % 8)
    packed = gzip.compress(bytes(bits), mtime=0)
    return "u" + base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=")


def bit_is_set(encoded_list: str, index: int) -> bool:
    """Whether bit `index` of an encoded list is 1 (the `u` prefix is optional)."""
    text = encoded_list.removeprefix("u")
    try:
        raw = gzip.decompress(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, OSError, EOFError, zlib.error) as exc:
        raise StatusListError(f"the encoded list is not gzip + base64url: {exc}") from None
    if not 0 <= index < len(raw) * 8:
        raise StatusListError(f"status index {index} is outside a list of {len(raw) * 8} bits")
    return bool(raw[index // 8] & (0x80 >> (index % 8)))


def status_list_credential(
    issuer: Issuer, number: int, revoked_indexes: Iterable[int], as_of: dt.datetime
) -> dict[str, Any]:
    """The `BitstringStatusListCredential` of list `number`; `revoked_indexes` are global
    indexes within that list, `as_of` the time of its latest change (a fact, not the clock)."""
    url = list_url(issuer.id, number)
    first = (number - 1) * LIST_SIZE
    return {
        "@context": [VC_CONTEXT],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer.profile(),
        "validFrom": as_of.isoformat(),
        "credentialSubject": {
            "id": f"{url}#list",
            "type": "BitstringStatusList",
            "statusPurpose": STATUS_PURPOSE,
            "encodedList": encode(i - first for i in revoked_indexes),
        },
    }
