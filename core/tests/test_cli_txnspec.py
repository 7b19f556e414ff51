"""The `aspen kv txn` spec: the line format and the JSON format."""

from __future__ import annotations

import pytest

from aspen.cli.txnspec import parse_txn_spec, spec_to_records
from aspen.errors import InvalidArgumentError

LINES = """
# create /config only if it does not exist yet
if version /config == 0
if value "/a key" = "some value"
if mod /config < 10
then put /config v1 --lease 0x10
then del /tmp --prefix
else get /config
else del /a --range-end /b
"""


def test_line_format():
    spec = parse_txn_spec(LINES)
    assert spec["compare"] == [
        {"key": b"/config", "target": "version", "op": "==", "value": 0},
        {"key": b"/a key", "target": "value", "op": "==", "value": b"some value"},
        {"key": b"/config", "target": "mod_revision", "op": "<", "value": 10},
    ]
    assert spec["success"] == [
        {"put": {"key": b"/config", "value": b"v1", "lease": 16}},
        {"delete": {"key": b"/tmp", "end": b"/tmq"}},
    ]
    assert spec["failure"] == [
        {"range": {"key": b"/config"}},
        {"delete": {"key": b"/a", "end": b"/b"}},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("when version k == 0", "line 1: a line starts with 'if', 'then' or 'else'"),
        ("if version k == zero", "version must be an integer"),
        ("if colour k == 0", "unknown compare target 'colour'"),
        ("if version k >= 0", "unknown compare operator '>='"),
        ("if version k", "expected: if <target> <key> <op> <value>"),
        ("\nthen put k", "line 2: expected: put <key> <value>"),
        ("then frob k", "expected an operation"),
        ("then get k --prefix --range-end z", "not both"),
        ("then put k v --prefix", "unknown option '--prefix'"),
        ("then del k --range-end", "--range-end needs a value"),
        ('then put k "unterminated', "No closing quotation"),
    ],
)
def test_line_format_errors(text, message):
    with pytest.raises(InvalidArgumentError, match=message):
        parse_txn_spec(text)


def test_json_format_with_base64_prefix_and_nesting():
    spec = parse_txn_spec(
        """{
          "compare": [{"key": "k", "target": "value", "op": "!=", "value_b64": "/w=="},
                      {"key": "k", "target": "version", "op": ">", "value": 1}],
          "success": [{"put": {"key_b64": "AAE=", "value": "v", "lease": 5}},
                      {"txn": {"success": [{"range": {"key": "p", "prefix": true}}]}}],
          "failure": [{"delete": {"key": "a", "end": "b", "prev_kv": true}}]
        }"""
    )
    assert spec["compare"] == [
        {"key": b"k", "target": "value", "op": "!=", "value": b"\xff"},
        {"key": b"k", "target": "version", "op": ">", "value": 1},
    ]
    assert spec["success"] == [
        {"put": {"key": b"\x00\x01", "value": b"v", "lease": 5}},
        {"txn": {"compare": [], "success": [{"range": {"key": b"p", "end": b"q"}}], "failure": []}},
    ]
    assert spec["failure"] == [{"delete": {"key": b"a", "end": b"b", "prev_kv": True}}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"when": []}', "unknown field"),
        ('{"success": {}}', "must be a list"),
        ('{"success": [{"put": {}, "delete": {}}]}', "an operation is"),
        ('{"success": [{"frob": {}}]}', "unknown operation 'frob'"),
        ('{"success": [{"put": {"key_b64": "!!"}}]}', "key_b64 is not base64"),
    ],
)
def test_json_format_errors(text, message):
    with pytest.raises(InvalidArgumentError, match=message):
        parse_txn_spec(text)


def test_spec_to_records():
    compare, success, failure = spec_to_records(parse_txn_spec(LINES))
    assert compare[0].to_wire() == {
        "key": b"/config",
        "end": None,
        "target": "version",
        "op": "==",
        "value": 0,
    }
    assert success[0].to_wire() == {"put": {"key": b"/config", "value": b"v1", "lease": 16}}
    assert failure[0].to_wire() == {"range": {"key": b"/config"}}


def test_spec_to_records_rejects_bad_compares():
    with pytest.raises(InvalidArgumentError, match="unknown compare field"):
        spec_to_records(parse_txn_spec('{"compare": [{"key": "k", "colour": 1}]}'))
    with pytest.raises(InvalidArgumentError, match="compare lacks op, target, value"):
        spec_to_records(parse_txn_spec('{"compare": [{"key": "k"}]}'))
