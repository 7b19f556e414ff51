"""SOPS file formats ("stores"): parse a file into its document and ``sops`` metadata,
and write them back.

- ``yaml``/``json``: a top-level map; metadata under the ``sops`` key. JSON numbers are
  float64 to SOPS (that matters for the MAC of clear-text numbers).
- ``dotenv``: ``KEY=value`` lines (``#`` comments; ``\\n`` in a value is a newline), all
  values strings; metadata as flattened ``sops_*`` keys.
- ``ini``: ``[section]`` and ``key = value`` lines (``;``/``#`` comments), the document
  is ``{section: {key: str}}``; metadata in a ``[sops]`` section, flattened.
- ``binary``: the JSON store holding the whole cleartext under ``data``.

Comments are not kept: SOPS leaves them out of the MAC, and the returned documents have
no place for them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import yaml

from aspen_secrets.sops.errors import SopsError
from aspen_secrets.sops.metadata import flatten_metadata, unflatten_metadata
from aspen_secrets.sops.values import utf8
from aspen_secrets.sops.yamlio import dump_yaml, load_yaml

__all__ = [
    "FORMATS",
    "Parsed",
    "check_format",
    "check_shape",
    "emit_encrypted",
    "emit_plain",
    "format_for_path",
    "parse_encrypted",
    "parse_plain",
]

#: The formats (SOPS stores) this package reads and writes.
FORMATS = ("yaml", "json", "dotenv", "ini", "binary")
_EXTENSIONS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".env": "dotenv", ".ini": "ini"}
_META_KEY = "sops"
_DOTENV_PREFIX = "sops_"


@dataclass
class Parsed:
    """A parsed SOPS file: the document (still encrypted) and its raw metadata."""

    document: dict[str, Any]
    metadata: Any
    #: Whether the format's numbers are float64 to SOPS (the JSON stores).
    numbers_as_float: bool


def format_for_path(path: str | PurePath) -> str:
    """The format implied by a file name: .yaml/.yml, .json, .env, .ini, else binary."""
    return _EXTENSIONS.get(PurePath(path).suffix.lower(), "binary")


def check_format(name: str) -> str:
    """``name`` if it is a supported format, else :class:`SopsError`."""
    if name not in FORMATS:
        raise SopsError(f"unsupported SOPS format {name!r} (one of: {', '.join(FORMATS)})")
    return name


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SopsError("the file is not UTF-8 text") from None


def _load_json(text: str) -> Any:
    def no_constant(name: str) -> Any:
        raise SopsError(f"bad JSON: {name} is not JSON")

    try:
        return json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise SopsError(f"bad JSON: {exc}") from None


def _load_yaml_map(text: str) -> Any:
    try:
        documents = load_yaml(text)
    except yaml.YAMLError as exc:
        raise SopsError(f"bad YAML: {' '.join(str(exc).split())}") from None
    if len(documents) != 1:
        raise SopsError("a SOPS YAML file must hold exactly one YAML document")
    return documents[0]


def _parse_tree(text: str, loader: Callable[[str], Any], kind: str) -> dict[str, Any]:
    try:
        tree = loader(text)
    except RecursionError:
        raise SopsError(f"bad {kind}: nested too deeply") from None
    if not isinstance(tree, dict):
        raise SopsError(f"a SOPS {kind} file must hold a map at the top level")
    return tree


def _dotenv_items(text: str) -> dict[str, str]:
    items: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SopsError(f"bad dotenv: line {number} has no '='")
        items[key] = value.replace("\\n", "\n")
    return items


def _ini_value(raw: str) -> str:
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    cut = min((i for i in (value.find("#"), value.find(";")) if i >= 0), default=-1)
    return value[:cut].rstrip() if cut >= 0 else value


def _ini_sections(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {"DEFAULT": {}}
    current = sections["DEFAULT"]
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise SopsError(f"bad INI: line {number} has an unclosed section name")
            current = sections.setdefault(line[1:-1].strip(), {})
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if cut <= 0:
            raise SopsError(f"bad INI: line {number} is not 'key = value'")
        current[line[:cut].strip()] = _ini_value(line[cut + 1 :])
    if not sections["DEFAULT"]:
        del sections["DEFAULT"]
    return sections


def check_shape(document: dict[str, Any], fmt: str) -> None:
    """Raise :class:`SopsError` unless ``document`` fits format ``fmt`` (dotenv: flat
    strings; INI: ``{section: {key: str}}``; binary: ``{"data": text}``)."""
    if fmt == "dotenv":
        _dotenv_text(document)
    elif fmt == "ini":
        _ini_text(document)
    elif fmt == "binary":
        emit_plain(document, fmt)


def parse_plain(data: bytes, fmt: str) -> dict[str, Any]:
    """A cleartext file of format ``fmt`` as a document."""
    check_format(fmt)
    if fmt == "binary":
        try:
            return {"data": data.decode("utf-8")}
        except UnicodeDecodeError:
            return {"data": data}
    text = _text(data)
    if fmt == "yaml":
        return _parse_tree(text, _load_yaml_map, "YAML")
    if fmt == "json":
        return _parse_tree(text, _load_json, "JSON")
    if fmt == "dotenv":
        return dict(_dotenv_items(text))
    return dict(_ini_sections(text))


def parse_encrypted(data: bytes, fmt: str) -> Parsed:
    """An encrypted file of format ``fmt``: the document without metadata, and the raw
    (unflattened) metadata. Raises :class:`SopsError` when there is no metadata."""
    check_format(fmt)
    if fmt in ("yaml", "json", "binary"):
        loader = _load_yaml_map if fmt == "yaml" else _load_json
        tree = _parse_tree(_text(data), loader, "YAML" if fmt == "yaml" else "JSON")
        if _META_KEY not in tree:
            raise SopsError("sops metadata not found (is the file encrypted with SOPS?)")
        metadata = tree.pop(_META_KEY)
        return Parsed(tree, metadata, numbers_as_float=fmt != "yaml")
    if fmt == "dotenv":
        items = _dotenv_items(_text(data))
        flat = {k[len(_DOTENV_PREFIX) :]: v for k, v in items.items() if k.startswith("sops_")}
        if not flat:
            raise SopsError("sops metadata not found (no sops_* keys in the dotenv file)")
        document = {k: v for k, v in items.items() if not k.startswith(_DOTENV_PREFIX)}
        return Parsed(document, unflatten_metadata(flat), numbers_as_float=False)
    sections = _ini_sections(_text(data))
    if _META_KEY not in sections:
        raise SopsError("sops metadata not found (no [sops] section in the INI file)")
    metadata = unflatten_metadata(sections.pop(_META_KEY))
    return Parsed(dict(sections), metadata, numbers_as_float=False)


def _dotenv_text(items: dict[str, Any]) -> str:
    lines = []
    for key, value in items.items():
        if not isinstance(key, str) or not key or "=" in key or "\n" in key or key[0] == "#":
            raise SopsError(f"cannot write {key!r} as a dotenv key")
        if not isinstance(value, str):
            raise SopsError(f"dotenv values must be strings ({key!r} is not)")
        lines.append(f"{key}={value.replace(chr(10), chr(92) + 'n')}\n")
    return "".join(lines)


def _ini_quote(value: str, where: str) -> str:
    """``value`` as an INI value that reads back unchanged (double-quoted if need be)."""
    if value == _ini_value(value) and not (value[:1] in "\"'" and value[-1:] == value[:1]):
        return value
    if "\n" in value or '"' in value:
        raise SopsError(f"cannot write the value of {where} in INI")
    return f'"{value}"'


def _ini_text(sections: dict[str, Any]) -> str:
    out = []
    for name, section in sections.items():
        if not isinstance(section, dict) or any(c in str(name) for c in "[]\n"):
            raise SopsError(f"an INI document is {{section: {{key: value}}}} ({name!r} is not)")
        out.append(f"[{name}]\n")
        for key, value in section.items():
            if not isinstance(value, str) or not isinstance(key, str):
                raise SopsError(f"INI values must be strings ([{name}] {key!r} is not)")
            if not key or any(c in key for c in "=:;#[\n") or key != key.strip():
                raise SopsError(f"cannot write {key!r} as an INI key")
            out.append(f"{key} = {_ini_quote(value, f'[{name}] {key}')}\n")
        out.append("\n")
    return "".join(out)


def _json_text(document: Any, indent: str) -> str:
    return json.dumps(document, indent=indent, ensure_ascii=False) + "\n"


def emit_plain(document: dict[str, Any], fmt: str) -> bytes:
    """A (cleartext) document written in format ``fmt``."""
    check_format(fmt)
    if fmt == "binary":
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, str | bytes) or len(document) != 1:
            raise SopsError("a binary document is {'data': <text>}")
        return data if isinstance(data, bytes) else utf8(data)
    if fmt == "yaml":
        return utf8(dump_yaml(document))
    if fmt == "json":
        return utf8(_json_text(document, "    "))
    if fmt == "dotenv":
        return utf8(_dotenv_text(document))
    return utf8(_ini_text(document))


def emit_encrypted(document: dict[str, Any], metadata: dict[str, Any], fmt: str) -> bytes:
    """An encrypted document and its raw metadata written as a SOPS file."""
    check_format(fmt)
    if fmt == "yaml":
        return utf8(dump_yaml({**document, _META_KEY: metadata}))
    if fmt in ("json", "binary"):
        return utf8(_json_text({**document, _META_KEY: metadata}, "\t"))
    flat = dict(sorted(flatten_metadata(metadata).items()))
    if fmt == "dotenv":
        if any(key.startswith(_DOTENV_PREFIX) for key in document):
            raise SopsError(f"dotenv keys starting with {_DOTENV_PREFIX!r} are SOPS's own")
        prefixed = {_DOTENV_PREFIX + key: value for key, value in flat.items()}
        return utf8(_dotenv_text({**document, **prefixed}))
    return utf8(_ini_text({**document, _META_KEY: flat}))
