"""Parameter validators: each error names the field, the expected type and the bound."""

from __future__ import annotations

import pytest

from aspen.errors import InvalidArgumentError
from aspen.rpc import params as p


def test_require_bytes() -> None:
    assert p.require_bytes({"k": b"x"}, "k") == b"x"
    assert p.require_bytes({"k": "é"}, "k") == "é".encode()
    assert p.require_bytes({"k": b""}, "k", allow_empty=True) == b""
    with pytest.raises(InvalidArgumentError, match="missing required field 'k'") as info:
        p.require_bytes({}, "k")
    assert info.value.details == {"field": "k"}
    with pytest.raises(InvalidArgumentError, match="'k' must not be empty"):
        p.require_bytes({"k": b""}, "k")
    with pytest.raises(InvalidArgumentError, match=r"'k' must be bytes.*not int"):
        p.require_bytes({"k": 5}, "k")
    with pytest.raises(InvalidArgumentError, match="'k' is 4 bytes, over the limit of 3") as info:
        p.require_bytes({"k": b"abcd"}, "k", max_len=3)
    assert info.value.details == {"field": "k", "limit": 3}


def test_optional_bytes() -> None:
    assert p.optional_bytes({}, "end") is None
    assert p.optional_bytes({"end": None}, "end", b"\0") == b"\0"
    assert p.optional_bytes({"end": b""}, "end") == b""
    with pytest.raises(InvalidArgumentError, match="over the limit"):
        p.optional_bytes({"end": b"abc"}, "end", max_len=2)


def test_ints() -> None:
    assert p.require_int({"n": 3}, "n", min=0, max=3) == 3
    assert p.optional_int({}, "n", 7) == 7
    with pytest.raises(InvalidArgumentError, match="'n' must be an int, not bool"):
        p.require_int({"n": True}, "n")
    with pytest.raises(InvalidArgumentError, match="'n' is -1, below the minimum of 0"):
        p.optional_int({"n": -1}, "n", min=0)
    with pytest.raises(InvalidArgumentError, match="'n' is 11, over the maximum of 10"):
        p.require_int({"n": 11}, "n", max=10)
    with pytest.raises(InvalidArgumentError, match="missing required field 'n' \\(int\\)"):
        p.require_int({}, "n")


def test_bool_str_list() -> None:
    assert p.optional_bool({}, "b") is False
    assert p.optional_bool({"b": True}, "b") is True
    with pytest.raises(InvalidArgumentError, match="'b' must be a bool, not int"):
        p.optional_bool({"b": 1}, "b")
    assert p.optional_str({"s": "x"}, "s", choices={"x", "y"}) == "x"
    assert p.optional_str({}, "s", "d") == "d"
    with pytest.raises(InvalidArgumentError, match="not one of"):
        p.optional_str({"s": "z"}, "s", choices={"x", "y"})
    with pytest.raises(InvalidArgumentError, match="over the limit of 2"):
        p.require_str({"s": "abc"}, "s", max_len=2)
    assert p.optional_list({"l": (1, 2)}, "l") == [1, 2]
    assert p.optional_list({}, "l") == []
    with pytest.raises(InvalidArgumentError, match="'l' must be a list, not dict"):
        p.optional_list({"l": {}}, "l")
    with pytest.raises(InvalidArgumentError, match="'l' has 3 items, over the limit of 2"):
        p.optional_list({"l": [1, 2, 3]}, "l", max_len=2)
