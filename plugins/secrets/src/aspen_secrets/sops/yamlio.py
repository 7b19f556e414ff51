"""YAML read and written the way SOPS (Go's ``yaml.v3``) types plain scalars.

PyYAML follows YAML 1.1 (``yes``/``on`` are booleans, ``2022-03-15`` is a date); SOPS
follows YAML 1.2's core schema, where those are strings. The type of a clear-text value
changes its bytes in the MAC, so we resolve as ``yaml.v3`` does: booleans are
``true``/``false`` (any case style), nulls ``~``/``null``/empty, ints decimal or
``0x``/``0o``/``0b``, floats with a dot or an exponent (``.inf``, ``.nan``), timestamps
stay strings. When writing, any string one of the two schemas would read as something
else is quoted.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["dump_yaml", "load_yaml"]

_BOOL = re.compile(r"true|True|TRUE|false|False|FALSE")
_NULL = re.compile(r"~|null|Null|NULL|")
_INT = re.compile(r"[-+]?([0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)")
_FLOAT = re.compile(
    r"[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?"
    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
)
_RESOLVERS = (
    ("tag:yaml.org,2002:bool", _BOOL, "tTfF"),
    ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", _INT, "-+0123456789"),
    ("tag:yaml.org,2002:float", _FLOAT, "-+0123456789."),
)


class _Loader(yaml.SafeLoader):
    """SafeLoader with ``yaml.v3``'s implicit types."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag == "tag:yaml.org,2002:merge"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _regex, _first in _RESOLVERS:
    _Loader.add_implicit_resolver(_tag, re.compile(f"^(?:{_regex.pattern})$"), list(_first))


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    if text[:2] in ("0x", "0o", "0b"):
        return sign * int(text, 0)
    if len(text) > 1 and text.startswith("0") and set(text) <= set("01234567"):
        return sign * int(text, 8)  # Go's ParseInt(s, 0, 64) reads a leading 0 as octal
    return sign * int(text, 10)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
# ``<<`` outside a key is the string "<<" (as keys, merges are resolved before this runs).
_Loader.add_constructor("tag:yaml.org,2002:merge", yaml.SafeLoader.construct_yaml_str)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that also quotes strings ``yaml.v3`` would type, and writes multi-line
    strings as literal blocks."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        """Indent list items under their key, as SOPS does."""
        super().increase_indent(flow, False)


for _tag, _regex, _first in _RESOLVERS:
    _Dumper.add_implicit_resolver(_tag, re.compile(f"^(?:{_regex.pattern})$"), list(_first))


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def load_yaml(text: str) -> Any:
    """All documents of ``text`` (a list), typed as SOPS types them."""
    return list(yaml.load_all(text, Loader=_Loader))  # _Loader is a SafeLoader subclass


def dump_yaml(document: Any) -> str:
    """``document`` as block-style YAML with 4-space indents (SOPS's layout)."""
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        indent=4,
        width=1 << 16,
    )
