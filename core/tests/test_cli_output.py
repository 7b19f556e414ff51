"""The printing helpers commands and plugins share (``aspen.cli``): ``emit``,
``emit_table``, ``show_result``, ``plain``, and the ``Duration`` option type."""

from __future__ import annotations

import json
from dataclasses import dataclass

import click
import pytest
from click.testing import CliRunner

from aspen.cli import Duration, emit, emit_table, plain, show_result


@dataclass
class Mode:
    """Stands in for the CliContext: only its output mode matters here."""

    json: bool


def _printed(func, *args) -> str:
    @click.command()
    def command() -> None:
        func(*args)

    result = CliRunner().invoke(command, [])
    assert result.exit_code == 0, result.output
    return result.output


ANSWER = {"name": b"a\xff", "state": "open", "tags": [b"x", "y"]}


@pytest.mark.parametrize("as_json", [False, True])
def test_emit_prints_json_or_the_text(as_json: bool) -> None:
    lines = _printed(emit, Mode(as_json), {"n": 1}, lambda a: (f"n is {a['n']}", "done"))
    assert lines == ('{\n  "n": 1\n}\n' if as_json else "n is 1\ndone\n")
    assert _printed(emit, Mode(False), {"n": 1}, "one line") == "one line\n"


def test_emit_table_prints_json_or_a_table() -> None:
    items = [{"a": 1, "b": "x"}, {"a": 22, "b": "y"}]
    table = _printed(emit_table, Mode(False), items, ("A", "B"), lambda i: (i["a"], i["b"]))
    assert table.splitlines() == ["A   B", "1   x", "22  y"]
    assert json.loads(_printed(emit_table, Mode(True), items, ("A",), lambda i: (i["a"],))) == (
        items
    )


def test_show_result_and_plain() -> None:
    assert plain(ANSWER) == {"name": "a\\xff", "state": "open", "tags": ["x", "y"]}
    assert _printed(show_result, Mode(False), ANSWER, "state") == "open\n"
    assert _printed(show_result, Mode(False), {"a": b"1", "b": 2}) == "a=1 b=2\n"
    assert json.loads(_printed(show_result, Mode(True), ANSWER)) == plain(ANSWER)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("500ms", 0.5),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("7d", 604800.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert Duration().convert(text, None, None) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10x", "m5", "1h 30m", "-5s"])
def test_a_bad_duration_is_a_usage_error(text: str) -> None:
    with pytest.raises(click.BadParameter, match="not a duration like 90s"):
        Duration().convert(text, None, None)
