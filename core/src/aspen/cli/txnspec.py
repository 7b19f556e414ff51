"""The transaction spec read by ``aspen kv txn``: JSON, or one statement per line.

Line format (``#`` starts a comment; words are split like a shell, so quote values with
spaces)::

    if <target> <key> <op> <value>       a compare; target: value, version,
                                         create_revision (create), mod_revision (mod), lease;
                                         op: == (or =), !=, <, >
    then <operation>                     runs when every compare holds
    else <operation>                     runs otherwise

    operation: put <key> <value> [--lease ID]
               del <key> [--prefix | --range-end END]
               get <key> [--prefix | --range-end END]

JSON format: ``{"compare": [...], "success": [...], "failure": [...]}`` exactly as in
docs/protocol.md (``kv.txn``), except that keys, values and range ends are strings
(UTF-8) or base64 under ``key_b64`` / ``value_b64`` / ``end_b64``, and ``"prefix": true``
may replace ``end`` in compares and operations.
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen.kv.commands import COMPARE_OPS, COMPARE_TARGETS
from aspen.kv.keys import prefix_range

__all__ = ["parse_txn_spec", "spec_to_records"]

_TARGET_ALIASES = {"create": "create_revision", "mod": "mod_revision"}
_BRANCHES = {"then": "success", "else": "failure"}
_OP_ALIASES = {"put": "put", "del": "delete", "delete": "delete", "get": "range", "range": "range"}
_BYTES_FIELDS = ("key", "value", "end")
#: Options each line operation accepts (option -> whether it takes a value).
_RANGE_OPTIONS = {"--prefix": False, "--range-end": True}
_OPTIONS = {"put": {"--lease": True}, "delete": _RANGE_OPTIONS, "range": _RANGE_OPTIONS}
_USAGE = {
    "put": "<key> <value> [--lease ID]",
    "delete": "<key> [--prefix | --range-end END]",
    "range": "<key> [--prefix | --range-end END]",
}


def parse_txn_spec(text: str) -> dict[str, Any]:
    """Parse a txn spec (JSON when it starts with ``{``) into ``kv.txn`` wire params."""
    if text.lstrip().startswith("{"):
        return _parse_json(text)
    return _parse_lines(text)


# ----------------------------------------------------------------------------- JSON
def _parse_json(text: str) -> dict[str, Any]:
    try:
        return _json_txn(json.loads(text))
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"txn spec is not valid JSON: {exc}") from None


def _json_txn(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise InvalidArgumentError(f"txn spec: a txn must be an object, got {spec!r}")
    unknown = sorted(set(spec) - {"compare", "success", "failure"})
    if unknown:
        raise InvalidArgumentError(f"txn spec: unknown field(s) {', '.join(unknown)}")
    return {
        "compare": [_json_fields(c, "compare") for c in _json_list(spec, "compare")],
        "success": [_json_op(op) for op in _json_list(spec, "success")],
        "failure": [_json_op(op) for op in _json_list(spec, "failure")],
    }


def _json_list(spec: dict[str, Any], name: str) -> list[Any]:
    value = spec.get(name, [])
    if not isinstance(value, list):
        raise InvalidArgumentError(f"txn spec: {name!r} must be a list")
    return value


def _json_op(op: Any) -> dict[str, Any]:
    if not isinstance(op, dict) or len(op) != 1:
        raise InvalidArgumentError(
            f"txn spec: an operation is {{put|delete|range|txn: {{...}}}}, got {op!r}"
        )
    [(kind, params)] = op.items()
    if kind == "txn":
        return {"txn": _json_txn(params)}
    if kind not in ("put", "delete", "range"):
        raise InvalidArgumentError(f"txn spec: unknown operation {kind!r}")
    return {kind: _json_fields(params, kind)}


def _json_fields(obj: Any, where: str) -> dict[str, Any]:
    """Decode string / ``*_b64`` byte fields and ``prefix`` into wire fields."""
    if not isinstance(obj, dict):
        raise InvalidArgumentError(f"txn spec: a {where} must be an object, got {obj!r}")
    out = dict(obj)
    for name in _BYTES_FIELDS:
        b64 = out.pop(f"{name}_b64", None)
        if b64 is not None:
            try:
                out[name] = base64.b64decode(b64, validate=True)
            except (binascii.Error, TypeError):
                raise InvalidArgumentError(f"txn spec: {name}_b64 is not base64") from None
        elif isinstance(out.get(name), str) and (name != "value" or _is_bytes_value(out)):
            out[name] = out[name].encode("utf-8")
    if out.pop("prefix", False):
        out["key"], out["end"] = prefix_range(out.get("key", b""))
    return out


def _is_bytes_value(fields: dict[str, Any]) -> bool:
    """A compare's ``value`` is bytes only when it tests the value (else it is an int)."""
    return fields.get("target", "value") == "value"


# ----------------------------------------------------------------------------- lines
def _parse_lines(text: str) -> dict[str, Any]:
    spec: dict[str, list[Any]] = {"compare": [], "success": [], "failure": []}
    for lineno, line in enumerate(text.splitlines(), 1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise InvalidArgumentError(f"txn spec line {lineno}: {exc}") from None
        if not words:
            continue
        head, rest = words[0], words[1:]
        try:
            if head == "if":
                spec["compare"].append(_compare(rest))
            elif head in _BRANCHES:
                spec[_BRANCHES[head]].append(_operation(rest))
            else:
                raise ValueError(f"a line starts with 'if', 'then' or 'else', not {head!r}")
        except ValueError as exc:
            raise InvalidArgumentError(f"txn spec line {lineno}: {exc}") from None
    return spec


def _compare(words: list[str]) -> dict[str, Any]:
    if len(words) != 4:
        raise ValueError("expected: if <target> <key> <op> <value>")
    target, key, op, value = words
    target = _TARGET_ALIASES.get(target, target)
    op = "==" if op == "=" else op
    if target not in COMPARE_TARGETS:
        raise ValueError(f"unknown compare target {target!r}: one of {sorted(COMPARE_TARGETS)}")
    if op not in COMPARE_OPS:
        raise ValueError(f"unknown compare operator {op!r}: one of {sorted(COMPARE_OPS)}")
    typed: bytes | int = value.encode("utf-8") if target == "value" else _int(value, target)
    return {"key": key.encode("utf-8"), "target": target, "op": op, "value": typed}


def _operation(words: list[str]) -> dict[str, Any]:
    if not words or words[0] not in _OP_ALIASES:
        raise ValueError(f"expected an operation: put, del or get, got {' '.join(words)!r}")
    verb, kind = words[0], _OP_ALIASES[words[0]]
    positional, options = _split_options(words[1:], _OPTIONS[kind])
    if len(positional) != (2 if kind == "put" else 1):
        raise ValueError(f"expected: {verb} {_USAGE[kind]}")
    params: dict[str, Any] = {"key": positional[0].encode("utf-8")}
    if kind == "put":
        params["value"] = positional[1].encode("utf-8")
        if "--lease" in options:
            params["lease"] = _int(options["--lease"], "lease")
    elif "--prefix" in options and "--range-end" in options:
        raise ValueError("use --prefix or --range-end, not both")
    elif "--prefix" in options:
        params["key"], params["end"] = prefix_range(params["key"])
    elif "--range-end" in options:
        params["end"] = options["--range-end"].encode("utf-8")
    return {kind: params}


def _split_options(args: list[str], allowed: dict[str, bool]) -> tuple[list[str], dict[str, str]]:
    """Split words into positionals and ``--options`` (``allowed``: option -> takes a value)."""
    positional: list[str] = []
    options: dict[str, str] = {}
    words = iter(args)
    for word in words:
        if not word.startswith("--"):
            positional.append(word)
        elif word not in allowed:
            raise ValueError(f"unknown option {word!r}; allowed: {', '.join(sorted(allowed))}")
        elif allowed[word]:
            value = next(words, None)
            if value is None:
                raise ValueError(f"{word} needs a value")
            options[word] = value
        else:
            options[word] = ""
    return positional, options


def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {text!r}") from None


def spec_to_records(spec: dict[str, Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """Turn parsed wire params into the client's ``Comparison`` and ``TxnOp`` records."""
    from aspen.client.txn import Comparison, TxnOp

    compare = []
    for cmp in spec["compare"]:
        unknown = sorted(set(cmp) - {"key", "end", "target", "op", "value"})
        if unknown:
            raise InvalidArgumentError(f"txn spec: unknown compare field(s) {', '.join(unknown)}")
        missing = sorted({"key", "target", "op", "value"} - set(cmp))
        if missing:
            raise InvalidArgumentError(f"txn spec: compare lacks {', '.join(missing)}")
        compare.append(Comparison(**cmp))
    success = [TxnOp(*next(iter(op.items()))) for op in spec["success"]]
    failure = [TxnOp(*next(iter(op.items()))) for op in spec["failure"]]
    return compare, success, failure
