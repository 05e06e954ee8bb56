"""Version numbers as written in qualifiers, markers and ARNs."""

from __future__ import annotations

import pytest

from ember.functions.naming import MAX_VERSION, names_a_version, version_number


@pytest.mark.parametrize("text, number", [("1", 1), ("007", 7), (str(MAX_VERSION), MAX_VERSION)])
def test_numbers(text: str, number: int) -> None:
    assert version_number(text) == number


@pytest.mark.parametrize(
    "text",
    [
        "",
        "$LATEST",
        "live",
        "-1",
        " 1",
        "1_000",
        "1.0",
        "\u00b2",  # '²'.isdigit() is true, int('²') raises
        "\u0661",  # an Arabic-Indic one: int() takes it, Lambda does not
        str(MAX_VERSION + 1),  # past SQLite's INTEGER
        "9" * 5000,  # past int()'s 4,300 digits
    ],
)
def test_not_numbers(text: str) -> None:
    assert version_number(text) is None


def test_a_version_is_ascii_digits_of_any_length() -> None:
    assert names_a_version("9" * 30)  # a version (not an alias) that exists nowhere
    assert not names_a_version("\u00b2") and not names_a_version("live") and not names_a_version("")
