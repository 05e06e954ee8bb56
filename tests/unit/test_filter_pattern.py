"""CloudWatch filter-pattern syntax: every form, what matches, what doesn't, and the prefilter."""

from __future__ import annotations

import json

import pytest

from ember.observe.filter_pattern import InvalidFilterPattern, Prefilter, compile_pattern

LAMBDA_ERROR = "[ERROR]\t2024-05-01T10:00:00.000Z\t1b2c\tsomething failed"
LAMBDA_INFO = "[INFO]\t2024-05-01T10:00:00.000Z\t1b2c\thealthcheck ok"
REPORT = "REPORT RequestId: 1b2c\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 30 MB"


def matches(pattern: str, message: str) -> bool:
    return compile_pattern(pattern).matches(message)


def doc(**fields: object) -> str:
    return json.dumps(fields)


# -- terms -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["", "   ", None])
def test_an_empty_pattern_matches_everything(pattern: str | None) -> None:
    compiled = compile_pattern(pattern)
    assert compiled.kind == "all"
    assert compiled.matches("anything") and compiled.matches("")


def test_a_term_matches_by_substring_and_is_case_sensitive() -> None:
    assert matches("ERROR", LAMBDA_ERROR)
    assert matches("fail", LAMBDA_ERROR)
    assert not matches("error", LAMBDA_ERROR)
    assert not matches("ERROR", LAMBDA_INFO)


def test_all_terms_must_match() -> None:
    assert matches("ERROR failed", LAMBDA_ERROR)
    assert matches("failed   ERROR", LAMBDA_ERROR)  # order and spacing don't matter
    assert not matches("ERROR healthcheck", LAMBDA_ERROR)


def test_a_quoted_phrase_matches_as_a_whole() -> None:
    assert matches('"something failed"', LAMBDA_ERROR)
    assert not matches('"failed something"', LAMBDA_ERROR)
    assert matches('"Billed Duration: 2 ms"', REPORT)
    assert matches('"a \\"quoted\\" word"', 'say a "quoted" word')


def test_exclusions() -> None:
    assert matches("-healthcheck", LAMBDA_ERROR)
    assert not matches("-healthcheck", LAMBDA_INFO)
    assert matches("ERROR -healthcheck", LAMBDA_ERROR)
    assert not matches("INFO -healthcheck", LAMBDA_INFO)
    assert not matches('-"something failed"', LAMBDA_ERROR)


def test_any_of() -> None:
    assert matches("?ERROR ?WARN", LAMBDA_ERROR)
    assert matches("?WARN ?ERROR", LAMBDA_ERROR)
    assert not matches("?WARN ?DEBUG", LAMBDA_ERROR)
    assert matches('?"something failed" ?nothing', LAMBDA_ERROR)


def test_any_of_with_required_and_excluded_terms() -> None:
    assert matches("1b2c ?ERROR ?WARN", LAMBDA_ERROR)
    assert not matches("1b2c ?ERROR ?WARN", LAMBDA_INFO)
    assert not matches("?ERROR ?INFO -healthcheck", LAMBDA_INFO)
    assert matches("?ERROR ?INFO -healthcheck", LAMBDA_ERROR)


def test_terms_with_punctuation_and_unicode() -> None:
    assert matches("RequestId:", REPORT)
    assert matches('"[ERROR]"', LAMBDA_ERROR)
    assert not matches("[ERROR]", LAMBDA_ERROR)  # unquoted, that is a one-field delimited pattern
    assert matches("naïve", "a naïve line ✓")
    assert matches('"✓"', "a naïve line ✓")


def test_a_lone_dash_or_question_mark_is_a_term() -> None:
    assert matches("-", "a-b")
    assert not matches("-", "ab")
    assert matches("a ?", "a?")


def test_terms_push_down_exactly() -> None:
    compiled = compile_pattern('ERROR "two words" ?a ?b -noise')
    assert compiled.exact
    assert compiled.prefilter == Prefilter(("ERROR", "two words"), ("a", "b"), ("noise",))


def test_an_unterminated_quote_is_invalid() -> None:
    with pytest.raises(InvalidFilterPattern):
        compile_pattern('"ERROR')


# -- JSON ------------------------------------------------------------------------------------


def test_json_string_equality() -> None:
    assert matches('{ $.level = "ERROR" }', doc(level="ERROR"))
    assert not matches('{ $.level = "ERROR" }', doc(level="error"))
    assert not matches('{ $.level = "ERROR" }', doc(level="ERRORS"))
    assert matches("{ $.level = ERROR }", doc(level="ERROR"))  # unquoted strings too
    assert matches('{$.level="ERROR"}', doc(level="ERROR"))  # no spaces needed


def test_json_string_inequality_needs_the_field() -> None:
    assert matches('{ $.level != "ERROR" }', doc(level="INFO"))
    assert not matches('{ $.level != "ERROR" }', doc(level="ERROR"))
    assert not matches('{ $.level != "ERROR" }', doc(other=1))


def test_json_wildcards() -> None:
    assert matches('{ $.message = "Err*" }', doc(message="Error: boom"))
    assert not matches('{ $.message = "Err*" }', doc(message="an Error"))
    assert matches('{ $.message = "*boom" }', doc(message="Error: boom"))
    assert matches('{ $.message = "*r: b*" }', doc(message="Error: boom"))
    assert matches("{ $.ip != 123.123.* }", doc(ip="10.0.0.1"))
    assert not matches("{ $.ip != 123.123.* }", doc(ip="123.123.4.5"))


def test_json_star_matches_any_present_value() -> None:
    for value in ("x", "", 0, 12.5, True):
        assert matches("{ $.x = * }", doc(x=value)), value
    assert not matches("{ $.x = * }", doc(y=1))
    assert not matches("{ $.x = * }", doc(x=None))
    assert not matches("{ $.x = * }", doc(x={"a": 1}))


@pytest.mark.parametrize(
    ("pattern", "latency", "expected"),
    [
        ("{ $.latency > 100 }", 150, True),
        ("{ $.latency > 100 }", 100, False),
        ("{ $.latency >= 100 }", 100, True),
        ("{ $.latency < 100 }", 99.5, True),
        ("{ $.latency <= 99.5 }", 99.5, True),
        ("{ $.latency = 100 }", 100.0, True),
        ("{ $.latency = 100.0 }", 100, True),
        ("{ $.latency != 100 }", 101, True),
        ("{ $.latency != 100 }", 100, False),
        ("{ $.latency > -1 }", 0, True),
        ("{ $.latency > 1e2 }", 101, True),
        ("{ $.latency > 100 }", "150", True),  # a numeric string compares as a number
        ("{ $.latency > 100 }", "slow", False),
        ("{ $.latency > 100 }", True, False),
        ("{ $.latency > 100 }", None, False),
    ],
)
def test_json_numeric_comparisons(pattern: str, latency: object, expected: bool) -> None:
    assert matches(pattern, doc(latency=latency)) is expected


def test_json_numeric_comparison_on_a_missing_field_is_false() -> None:
    assert not matches("{ $.latency > 100 }", doc(other=500))


def test_json_and_or_parentheses() -> None:
    pattern = '{ ($.level = "ERROR" && $.latency > 100) || $.fatal IS TRUE }'
    assert matches(pattern, doc(level="ERROR", latency=200))
    assert not matches(pattern, doc(level="ERROR", latency=50))
    assert matches(pattern, doc(level="INFO", fatal=True))
    assert not matches(pattern, doc(level="INFO", fatal=False))
    assert matches("{ $.a = 1 && ($.b = 2 || $.c = 3) }", doc(a=1, c=3))
    assert not matches("{ $.a = 1 && ($.b = 2 || $.c = 3) }", doc(a=2, c=3))


def test_json_and_binds_tighter_than_or() -> None:
    pattern = "{ $.a = 1 || $.b = 2 && $.c = 3 }"
    assert matches(pattern, doc(a=1))
    assert not matches(pattern, doc(b=2))
    assert matches(pattern, doc(b=2, c=3))


def test_json_nested_fields_and_arrays() -> None:
    event = doc(
        user={"id": 7, "name": "Sally"}, items=[{"sku": "A1"}, {"sku": "B2"}], grid=[[1, 2], [3, 4]]
    )
    assert matches("{ $.user.id = 7 }", event)
    assert matches('{ $.user.name = "Sally" }', event)
    assert matches('{ $.items[1].sku = "B2" }', event)
    assert matches("{ $.grid[1][0] = 3 }", event)
    assert not matches('{ $.items[5].sku = "B2" }', event)
    assert not matches("{ $.user.id.deeper = 7 }", event)
    assert matches('{ $.user["name"] = "Sally" }', event)


def test_json_is_true_false_null() -> None:
    assert matches("{ $.ok IS TRUE }", doc(ok=True))
    assert not matches("{ $.ok IS TRUE }", doc(ok="true"))
    assert matches("{ $.ok IS FALSE }", doc(ok=False))
    assert not matches("{ $.ok IS FALSE }", doc(ok=0))
    assert matches("{ $.gone IS NULL }", doc(gone=None))
    assert not matches("{ $.gone IS NULL }", doc(other=1))


def test_json_exists_and_not_exists() -> None:
    assert matches("{ $.errorCode EXISTS }", doc(errorCode=None))
    assert not matches("{ $.errorCode EXISTS }", doc(other=1))
    assert matches("{ $.errorCode NOT EXISTS }", doc(other=1))
    assert not matches("{ $.errorCode NOT EXISTS }", doc(errorCode="E1"))


def test_json_regex_values() -> None:
    assert matches("{ $.message = %Err(or)?: [0-9]+% }", doc(message="Error: 42"))
    assert not matches("{ $.message = %^Err% }", doc(message="an Error"))
    assert matches("{ $.message != %^Err% }", doc(message="an Error"))


def test_json_patterns_never_match_text_or_non_object_events() -> None:
    assert not matches('{ $.level = "ERROR" }', LAMBDA_ERROR)
    assert not matches('{ $.level = "ERROR" }', '["ERROR"]')
    assert not matches('{ $.level = "ERROR" }', '{"level": "ERROR"')  # truncated JSON
    assert matches('{ $.level = "ERROR" }', '  {"level": "ERROR"}\n')


def test_json_unicode_values() -> None:
    assert matches('{ $.name = "Zoë" }', json.dumps({"name": "Zoë"}))  # \u-escaped on the wire
    assert matches('{ $.name = "Zoë" }', json.dumps({"name": "Zoë"}, ensure_ascii=False))


def test_json_prefilter_is_necessary_never_wrong() -> None:
    compiled = compile_pattern('{ $.level = "ERROR" && $.latency > 100 }')
    assert set(compiled.prefilter.all_of) == {'"level"', "ERROR", '"latency"'}
    assert not compiled.exact
    # An OR keeps only what both sides need; != and NOT EXISTS add nothing.
    assert compile_pattern("{ $.a = 1 || $.b = 2 }").prefilter.all_of == ()
    assert compile_pattern('{ $.a = "x" || $.a = "y" }').prefilter.all_of == ('"a"',)
    assert compile_pattern("{ $.a != 1 }").prefilter.all_of == ()
    assert compile_pattern("{ $.a NOT EXISTS }").prefilter.all_of == ()
    # Values a JSON encoder may escape are not pushed down.
    assert "Zoë" not in compile_pattern('{ $.name = "Zoë" }').prefilter.all_of
    assert compile_pattern('{ $.path = "/a/b" }').prefilter.all_of == ('"path"',)


@pytest.mark.parametrize(
    "pattern",
    [
        "{ $.level = }",
        "{ level = 1 }",
        "{ $. = 1 }",
        "{ $.a > abc }",
        "{ $.a = 1 ",
        "{ $.a = 1 } trailing",
        "{ ($.a = 1 }",
        "{ $.a IS MAYBE }",
        "{ $.a NOT THERE }",
        "{ $.a[x] = 1 }",
        "{ $.a ~ 1 }",
        "{ $.a = %[% }",
        "{ }",
    ],
)
def test_invalid_json_patterns(pattern: str) -> None:
    with pytest.raises(InvalidFilterPattern):
        compile_pattern(pattern)


# -- space-delimited and regex ---------------------------------------------------------------

ACCESS = '127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 404 1534'


def test_space_delimited_fields() -> None:
    assert matches("[ip, id, user, timestamp, request, status_code, size]", ACCESS)
    assert matches("[ip, id, user, timestamp, request, status_code = 404, size]", ACCESS)
    assert matches("[ip, id, user, timestamp, request, status_code = 4*, size > 1000]", ACCESS)
    assert not matches("[ip, id, user, timestamp, request, status_code = 200, size]", ACCESS)
    assert not matches("[ip, user]", ACCESS)  # the field count must fit
    assert matches("[ip, ..., status_code = 404, size]", ACCESS)
    assert matches('[..., request = "GET /apache_pb.gif HTTP/1.0", ...]', ACCESS)
    assert matches("[ip = 127.0.0.*, ...]", ACCESS)
    assert not matches("[ip != 127.0.0.*, ...]", ACCESS)


def test_regex_patterns() -> None:
    assert matches("%ERROR|WARN%", LAMBDA_ERROR)
    assert not matches("%^ERROR%", LAMBDA_ERROR)
    assert matches(r"%Duration: \d+\.\d+ ms%", REPORT)
    with pytest.raises(InvalidFilterPattern):
        compile_pattern("%(%")
