"""How many entries a zip has, found without building its central directory.

`zipfile.ZipFile` turns every central-directory record into a `ZipInfo` object as it opens the
archive (about 300 bytes each): a 47 MB upload of one-letter names is a million entries, and
opening it took 314 MB and 7.8 s of CPU (holding the GIL) before any check could run. `check_entry_count` answers first, in
constant memory:

1. the End Of Central Directory record (and the ZIP64 one, found as zipfile finds them) gives
   the declared entry count and the directory's size and offset — a count over the limit, or a
   directory that does not fit in the upload, is refused at once;
2. zipfile makes one entry per `PK\\x01\\x02` record it walks, so the number of those signatures
   in the upload bounds what it can build, whatever the EOCD claims (one C-speed scan);
3. only when that bound is over the limit (nested, uncompressed zips contain signatures too)
   is the directory walked record by record, stopping at the limit.
"""

from __future__ import annotations

import struct

_EOCD = b"PK\x05\x06"
_EOCD_FORMAT = struct.Struct("<4s4H2LH")  # 22 bytes
_LOCATOR = b"PK\x06\x07"
_LOCATOR_FORMAT = struct.Struct("<4sLQL")  # 20 bytes
_EOCD64 = b"PK\x06\x06"
_EOCD64_FORMAT = struct.Struct("<4sQ2H2L4Q")  # 56 bytes
_CENTRAL = b"PK\x01\x02"
_CENTRAL_SIZE = 46
_NAME_LENGTHS = struct.Struct("<3H")  # file name, extra field, comment lengths (at offset 28)
_MAX_COMMENT = 65535


class MalformedZip(ValueError):
    """Not a zip this server can read (no EOCD, a directory outside the upload, ...)."""


class TooManyEntries(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} entries")
        self.limit = limit


def check_entry_count(data: bytes, limit: int) -> None:
    """Make sure zipfile will build at most `limit` entries from `data`: raises TooManyEntries
    as soon as it is known to be more, MalformedZip when the directory cannot be located."""
    declared, size, start = _directory(data)
    if declared > limit:
        raise TooManyEntries(limit)
    if data.count(_CENTRAL) > limit:
        _walk(data, start, start + size, limit)


def _directory(data: bytes) -> tuple[int, int, int]:
    """(declared entries, directory size, directory start) as zipfile reads them."""
    total = len(data)
    if total < _EOCD_FORMAT.size:
        raise MalformedZip("too short for a zip")
    location = total - _EOCD_FORMAT.size
    if not (data[location : location + 4] == _EOCD and data[-2:] == b"\0\0"):
        floor = max(total - _MAX_COMMENT - _EOCD_FORMAT.size, 0)
        location = data.rfind(_EOCD, floor)
        if location < 0 or location + _EOCD_FORMAT.size > total:
            raise MalformedZip("no end of central directory record")
    fields = _EOCD_FORMAT.unpack_from(data, location)
    entries, size, offset = fields[4], fields[5], fields[6]
    zip64 = False
    locator_at = location - _LOCATOR_FORMAT.size
    if locator_at >= 0 and data[locator_at : locator_at + 4] == _LOCATOR:
        _, disk, _, disks = _LOCATOR_FORMAT.unpack_from(data, locator_at)
        if disk != 0 or disks > 1:
            raise MalformedZip("zips that span disks are not supported")
        record_at = locator_at - _EOCD64_FORMAT.size
        if record_at >= 0 and data[record_at : record_at + 4] == _EOCD64:
            record = _EOCD64_FORMAT.unpack_from(data, record_at)
            entries, size, offset = record[7], record[8], record[9]
            zip64 = True
    # zipfile's own arithmetic: data prepended to the archive shifts every offset.
    concat = location - size - offset
    if zip64:
        concat -= _EOCD64_FORMAT.size + _LOCATOR_FORMAT.size
    start = offset + concat
    if start < 0 or size > total or start + size > location:
        raise MalformedZip("the central directory does not fit in the upload")
    return entries, size, start


def _walk(data: bytes, position: int, end: int, limit: int) -> None:
    """Count records as zipfile walks them (by size, not by the declared count)."""
    count = 0
    unpack, signature, fixed = _NAME_LENGTHS.unpack_from, _CENTRAL, _CENTRAL_SIZE
    while position < end:
        if count >= limit:
            raise TooManyEntries(limit)
        if end - position < fixed or not data.startswith(signature, position):
            raise MalformedZip("bad central directory record")
        name, extra, comment = unpack(data, position + 28)
        position += fixed + name + extra + comment
        count += 1
