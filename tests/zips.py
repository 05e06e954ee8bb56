"""Hand-built zips for tests of what the server refuses before zipfile opens them."""

from __future__ import annotations

import struct
import zlib


def many_entry_zip(
    n: int, name: bytes = b"a", zip64: bool | None = None, declared: int | None = None
) -> bytes:
    """A zip with one empty stored file and `n` central-directory records naming it (47 bytes
    each with a one-letter name: a million fit in a 47 MB upload). `declared` is the count the
    end records claim (default: `n`); ZIP64 end records are written when it needs them."""
    crc = zlib.crc32(b"")
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, 0, 0, len(name), 0) + name
    record = (
        struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, 0, 0, len(name), 0, 0, 0, 0, 0, 0
        )
        + name
    )
    directory = record * n
    count = n if declared is None else declared
    offset = len(local)
    parts = [local, directory]
    if zip64 if zip64 is not None else count > 0xFFFF:
        at = offset + len(directory)
        parts.append(
            struct.pack(
                "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(directory), offset
            )
        )
        parts.append(struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1))
        parts.append(
            struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
        )
    else:
        parts.append(
            struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), offset, 0)
        )
    return b"".join(parts)
