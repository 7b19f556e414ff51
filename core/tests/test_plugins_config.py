"""Plugin configuration: defaults, the TOML file, environment variables, type errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from aspen.errors import InvalidArgumentError
from aspen.plugins.config import env_var_name, load_config_file, resolve_config
from aspen.plugins.types import ConfigOption, ConfigSection

SECTION = ConfigSection(
    "my-plugin",
    (
        ConfigOption("greeting", str, "hi"),
        ConfigOption("retries", int, 3),
        ConfigOption("ratio", float, 0.5),
        ConfigOption("verbose", bool, False),
        ConfigOption("root", Path, None),
        ConfigOption("tags", list, []),
    ),
)


def test_env_var_name_is_upper_case_with_underscores():
    assert env_var_name("my-plugin", "max-items") == "ASPEN_MY_PLUGIN_MAX_ITEMS"


def test_defaults_when_nothing_is_set():
    assert resolve_config([SECTION], {}, {}) == {
        "my-plugin": {
            "greeting": "hi",
            "retries": 3,
            "ratio": 0.5,
            "verbose": False,
            "root": None,
            "tags": [],
        }
    }


def test_file_values_are_type_checked_and_widened():
    data = {"my-plugin": {"retries": 5, "ratio": 2, "root": "/srv", "tags": ["a"]}}
    values = resolve_config([SECTION], data, {})["my-plugin"]
    assert values["retries"] == 5
    assert values["ratio"] == 2.0 and isinstance(values["ratio"], float)
    assert values["root"] == Path("/srv")
    assert values["tags"] == ["a"]


def test_environment_overrides_the_file_with_coercion():
    env = {
        "ASPEN_MY_PLUGIN_RETRIES": "7",
        "ASPEN_MY_PLUGIN_RATIO": "0.25",
        "ASPEN_MY_PLUGIN_VERBOSE": "yes",
        "ASPEN_MY_PLUGIN_ROOT": "/data",
        "ASPEN_MY_PLUGIN_TAGS": "a, b,,c",
        "ASPEN_MY_PLUGIN_GREETING": "hello",
    }
    values = resolve_config([SECTION], {"my-plugin": {"retries": 5}}, env)["my-plugin"]
    assert values == {
        "greeting": "hello",
        "retries": 7,
        "ratio": 0.25,
        "verbose": True,
        "root": Path("/data"),
        "tags": ["a", "b", "c"],
    }


@pytest.mark.parametrize(("text", "expected"), [("0", False), ("off", False), ("TRUE", True)])
def test_bool_spellings(text, expected):
    env = {"ASPEN_MY_PLUGIN_VERBOSE": text}
    assert resolve_config([SECTION], {}, env)["my-plugin"]["verbose"] is expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ASPEN_MY_PLUGIN_RETRIES": "many"}, "ASPEN_MY_PLUGIN_RETRIES='many' is not a valid int"),
        ({"ASPEN_MY_PLUGIN_VERBOSE": "maybe"}, "use true/false"),
    ],
)
def test_bad_environment_values(env, message):
    with pytest.raises(InvalidArgumentError, match=message):
        resolve_config([SECTION], {}, env)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"retries": "5"}, r"\[my-plugin\] retries must be int, got str '5'"),
        ({"retries": True}, "must be int, got bool"),
        ({"verbose": 1}, "must be bool, got int"),
        ({"colour": "red"}, r"unknown option\(s\) colour in \[my-plugin\]"),
    ],
)
def test_bad_file_values(table, message):
    with pytest.raises(InvalidArgumentError, match=message):
        resolve_config([SECTION], {"my-plugin": table}, {})


def test_section_must_be_a_table():
    with pytest.raises(InvalidArgumentError, match="must be a table"):
        resolve_config([SECTION], {"my-plugin": 3}, {})


def test_tables_of_plugins_not_installed_are_ignored():
    assert resolve_config([], {"elsewhere": {"x": 1}}, {}) == {}


def test_load_config_file(tmp_path):
    path = tmp_path / "aspen.toml"
    path.write_text('[my-plugin]\ngreeting = "hey"\n')
    assert load_config_file(path) == {"my-plugin": {"greeting": "hey"}}
    assert load_config_file(None) == {}


def test_load_config_file_errors(tmp_path):
    with pytest.raises(InvalidArgumentError, match="cannot read config file"):
        load_config_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[oops\n")
    with pytest.raises(InvalidArgumentError, match="is not valid TOML"):
        load_config_file(bad)
