"""What names and numbers in requests can stand for: the partition, version numbers.

Kept apart from the services so that functions, versions and layers parse them alike.
"""

from __future__ import annotations

PARTITION = "aws"  # every ARN Ember writes is in it; ARNs of other partitions name nothing here
MAX_VERSION = 2**63 - 1  # the largest INTEGER SQLite stores: a larger number names nothing stored


def names_a_version(qualifier: str) -> bool:
    """Whether a qualifier is a version number (ASCII digits), not an alias or $LATEST."""
    return qualifier.isascii() and qualifier.isdigit()


def version_number(text: str) -> int | None:
    """A published version's number as written in a qualifier, marker or ARN; None for text
    that is not one (ASCII digits only: '²'.isdigit() is true) or past what can be stored."""
    if not names_a_version(text) or len(text) > 19:  # int() refuses 4,300 digits
        return None
    number = int(text)
    return number if number <= MAX_VERSION else None
