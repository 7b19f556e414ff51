"""SOPS (age) decrypt/encrypt: real files written by sops 3.7.1, tampering, malformed
input, round trips, and interop with the real ``age`` CLI."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyrage
import pytest
import yaml

from aspen.errors import InvalidArgumentError
from aspen_secrets.limits import SOPS_MAX_DEPTH, SOPS_MAX_FILE_BYTES
from aspen_secrets.sops import (
    SopsError,
    SopsMacMismatchError,
    decrypt_bytes,
    decrypt_file,
    encrypt_bytes,
    encrypt_document,
    load_age_identities,
)
from aspen_secrets.sops.age import unwrap_data_key
from aspen_secrets.sops.metadata import MAC_ONLY_ENCRYPTED_INIT
from aspen_secrets.sops.values import decrypt_value, format_go_float

FIXTURES = Path(__file__).parent / "fixtures" / "sops"
KEYS = FIXTURES / "keys.txt"
RECIPIENTS = [
    "age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw",
    "age1tmaae3ld5vpevmsh5yacsauzx8jetg300mpvc4ugp5zr5l6ssq9sla97ep",
]
SAMPLES = ["example.yaml", "example.json", "example.ini", "example.txt", "example.env"]
ENC_RE = re.compile(r"ENC\[AES256_GCM,data:[^,]*,iv:([^,]+),tag:[^,]+,type:[a-z]+\]")


@pytest.fixture(scope="module")
def identities() -> list[Any]:
    return load_age_identities(KEYS)


def expected(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.expected.json").read_text())


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


# --- real files -----------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("which", [0, 1])
def test_fixture_decrypts_with_either_identity(name: str, which: int, identities: list) -> None:
    assert decrypt_file(FIXTURES / name, [identities[which]]) == expected(name)


def test_format_inferred_or_given(identities: list) -> None:
    data = (FIXTURES / "example.txt").read_bytes()
    assert decrypt_bytes(data, "binary", identities) == expected("example.txt")
    assert decrypt_file(FIXTURES / "example.yaml", identities, format="yaml")["number"] == (
        1234568000.0
    )


def test_typed_values(identities: list) -> None:
    doc = decrypt_file(FIXTURES / "example.yaml", identities)
    assert doc["somebooleans"] == [True, False]
    assert isinstance(doc["number"], float)
    assert decrypt_file(FIXTURES / "example.json", identities)["age"] == 25.4


# --- identities -------------------------------------------------------------------------


def test_key_file_with_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "k.txt"
    path.write_text("\n# a comment\n" + KEYS.read_text() + "\n\n")
    assert len(load_age_identities(path)) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("# only comments\n", "no age identity"),
        ("AGE-SECRET-KEY-1NOTAKEY\n", "line 1: bad age identity"),
        ("hello\n", "line 1: not an age X25519 identity"),
    ],
)
def test_bad_key_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "k.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidArgumentError, match=message):
        load_age_identities(path)


def test_wrong_identity_names_recipients() -> None:
    stranger = pyrage.x25519.Identity.generate()
    with pytest.raises(SopsError) as info:
        decrypt_file(FIXTURES / "example.yaml", [stranger])
    assert not isinstance(info.value, SopsMacMismatchError)
    assert all(recipient in str(info.value) for recipient in RECIPIENTS)


# --- tampering --------------------------------------------------------------------------


def _swap_first_two_array_items(text: str) -> str:
    lines = text.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith("an_array:")) + 1
    lines[first], lines[first + 1] = lines[first + 1], lines[first]
    return "".join(lines)


def _drop_array_item(text: str) -> str:
    lines = text.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith("an_array:")) + 1
    return "".join(lines[:first] + lines[first + 1 :])


def _flip_data(text: str) -> str:
    # change one base64 character of the first encrypted value's data
    start = text.index("data:") + len("data:")
    char = "A" if text[start] != "A" else "B"
    return text[:start] + char + text[start + 1 :]


def _move_value(text: str) -> str:
    user = re.search(r"user: (ENC\[[^\]]+\])", text).group(1)
    password = re.search(r"password: (ENC\[[^\]]+\])", text).group(1)
    return text.replace(password, "@@").replace(user, password).replace("@@", user)


TAMPERINGS = {
    "value ciphertext changed": _flip_data,
    "values reordered in a list": _swap_first_two_array_items,
    "value removed": _drop_array_item,
    "values moved between keys": _move_value,
    "clear-text value changed": lambda t: t.replace(
        "going to remain in clear text", "going to remain in clear text!"
    ),
    "mac changed": lambda t: t.replace(
        "mac: ENC[AES256_GCM,data:dw", "mac: ENC[AES256_GCM,data:dx"
    ),
    "lastmodified changed": lambda t: t.replace("2022-03-15T22:11:15Z", "2022-03-15T22:11:16Z"),
}


@pytest.mark.parametrize("tamper", list(TAMPERINGS), ids=list(TAMPERINGS))
def test_tampered_yaml_fails_mac(tamper: str, identities: list) -> None:
    original = fixture_text("example.yaml")
    changed = TAMPERINGS[tamper](original)
    assert changed != original
    with pytest.raises(SopsMacMismatchError):
        decrypt_bytes(changed.encode(), "yaml", identities)


def test_tampered_dotenv_and_ini_fail_mac(identities: list) -> None:
    env = fixture_text("example.env").replace("=debug", "=info")
    with pytest.raises(SopsMacMismatchError):
        decrypt_bytes(env.encode(), "dotenv", identities)
    ini = fixture_text("example.ini").replace("hi there!", "hi there?")
    with pytest.raises(SopsMacMismatchError):
        decrypt_bytes(ini.encode(), "ini", identities)


# --- malformed input --------------------------------------------------------------------

MALFORMED = {
    "bad yaml": (b"a: [unclosed\n", "yaml", "bad YAML"),
    "bad json": (b'{"a": ', "json", "bad JSON"),
    "json list": (b"[1, 2]", "json", "map at the top level"),
    "no metadata": (b"a: b\n", "yaml", "sops metadata not found"),
    "no dotenv metadata": (b"A=b\n", "dotenv", "sops metadata not found"),
    "bad dotenv line": (b"just words\n", "dotenv", "no '='"),
    "no ini metadata": (b"[a]\nb = c\n", "ini", "sops metadata not found"),
    "not utf-8": (b"\xff\xfe", "yaml", "not UTF-8"),
    "unsupported format": (b"{}", "toml", "unsupported SOPS format"),
    "two yaml documents": (b"a: 1\n---\nb: 2\n", "yaml", "exactly one YAML document"),
    "metadata not a map": (b"a: 1\nsops: 3\n", "yaml", "not a map"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_input(case: str, identities: list) -> None:
    data, fmt, message = MALFORMED[case]
    with pytest.raises(SopsError, match=message):
        decrypt_bytes(data, fmt, identities)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("type:str]", "type:nope]", "bad cleartext|not a SOPS"),
        ("iv:onHYft9ubwdfdwOOsO9yET9xe6x3UHGl+Ov/LApkCmU=", "iv:!!", "not a SOPS ENC"),
        ('lastmodified: "2022-03-15T22:11:15Z"', "lastmodified: yesterday", "RFC 3339"),
        ("    unencrypted_suffix: _unencrypted\n", "    pgp: []\n", None),
    ],
)
def test_malformed_metadata_or_values(
    old: str, new: str, message: str | None, identities: list
) -> None:
    text = fixture_text("example.yaml")
    assert old in text
    changed = text.replace(old, new, 1).encode()
    if message is None:  # no rule named: the default _unencrypted suffix applies
        assert decrypt_bytes(changed, "yaml", identities) == expected("example.yaml")
        return
    with pytest.raises(SopsError, match=message):
        decrypt_bytes(changed, "yaml", identities)


def test_clear_value_where_an_encrypted_one_belongs(identities: list) -> None:
    text = re.sub(r"myapp1: ENC\[[^\]]+\]", "myapp1: 12", fixture_text("example.yaml"))
    with pytest.raises(SopsError, match="expected an encrypted value"):
        decrypt_bytes(text.encode(), "yaml", identities)


def test_size_and_depth_bounds(tmp_path: Path, identities: list) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (SOPS_MAX_FILE_BYTES + 1))
    with pytest.raises(SopsError, match="larger than"):
        decrypt_file(big, identities)
    deep: Any = "x"
    for _ in range(SOPS_MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(SopsError, match="nested deeper"):
        encrypt_document({"a": deep}, "json", RECIPIENTS)
    with pytest.raises(SopsError, match="nested too deeply"):
        decrypt_bytes(b"[" * 100_000, "json", identities)


# --- encryption -------------------------------------------------------------------------

TREE = {
    "name": "app",
    "port": 8080,
    "ratio": 0.25,
    "big": 1e21,
    "on": True,
    "off": False,
    "nothing": None,
    "empty": "",
    "yes_string": "yes",
    "list": ["a", 2, 3.5, False, {"k": "v"}, ["nested"]],
    # long markers: a short one ("eve") turns up in random base64 now and then
    "db": {"user": "eve-q7k2x9", "password": "c4r1b0u-m3z8w1", "port_unencrypted": 5432},
    "plain_unencrypted": {"deep": ["clear", 1]},
}


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_round_trip_tree_formats(fmt: str, identities: list) -> None:
    out = encrypt_document(TREE, fmt, RECIPIENTS)
    assert b"c4r1b0u-m3z8w1" not in out and b"eve-q7k2x9" not in out
    assert decrypt_bytes(out, fmt, identities[:1]) == TREE
    assert decrypt_bytes(out, fmt, identities[1:]) == TREE


def test_encrypted_yaml_layout(identities: list) -> None:
    out = yaml.safe_load(encrypt_document(TREE, "yaml", RECIPIENTS[:1]))
    assert ENC_RE.fullmatch(out["name"])
    assert out["db"]["port_unencrypted"] == 5432
    assert out["plain_unencrypted"] == {"deep": ["clear", 1]}
    assert out["nothing"] is None and out["empty"] == ""
    meta = out["sops"]
    assert [entry["recipient"] for entry in meta["age"]] == RECIPIENTS[:1]
    assert meta["age"][0]["enc"].startswith("-----BEGIN AGE ENCRYPTED FILE-----\n")
    assert meta["unencrypted_suffix"] == "_unencrypted"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["lastmodified"])
    assert len(base64.b64decode(ENC_RE.fullmatch(out["name"]).group(1))) == 32
    key = unwrap_data_key([(RECIPIENTS[0], meta["age"][0]["enc"])], identities)
    mac = decrypt_value(meta["mac"], key, meta["lastmodified"], where="mac")
    assert re.fullmatch(r"[0-9A-F]{128}", mac)


def test_round_trip_dotenv(identities: list) -> None:
    doc = {"A": "1", "MULTI": "x\ny", "EMPTY": "", "KEEP_unencrypted": "clear", "S": "a=b#c"}
    out = encrypt_document(doc, "dotenv", RECIPIENTS)
    assert b"KEEP_unencrypted=clear\n" in out and b"sops_mac=ENC[" in out
    assert decrypt_bytes(out, "dotenv", identities) == doc
    with pytest.raises(SopsError, match="must be strings"):
        encrypt_document({"A": 1}, "dotenv", RECIPIENTS)
    with pytest.raises(SopsError, match="SOPS's own"):
        encrypt_document({"sops_x": "1"}, "dotenv", RECIPIENTS)


def test_round_trip_ini_and_binary(identities: list) -> None:
    doc = {"main": {"a": "1", "b": "x ; y"}, "other": {"c_unencrypted": "x # y"}}
    assert decrypt_bytes(encrypt_document(doc, "ini", RECIPIENTS), "ini", identities) == doc
    text = "line 1\nline 2\n"
    out = encrypt_document(text, "binary", RECIPIENTS)
    assert decrypt_bytes(out, "binary", identities) == {"data": text}


@pytest.mark.parametrize(
    ("rule", "secret_key", "clear_key"),
    [
        ({"encrypted_regex": "^(password|token)$"}, "password", "user"),
        ({"encrypted_suffix": "_secret"}, "token_secret", "user"),
        ({"unencrypted_regex": "^user$"}, "password", "user"),
    ],
)
def test_rules_pick_the_encrypted_values(
    rule: dict[str, str], secret_key: str, clear_key: str, identities: list
) -> None:
    doc = {"user": "eve", "password": "p", "token_secret": "t"}
    out = encrypt_document(doc, "yaml", RECIPIENTS, **rule)
    raw = yaml.safe_load(out)
    assert ENC_RE.fullmatch(raw[secret_key]) and raw[clear_key] == "eve"
    assert raw["sops"][next(iter(rule))] == next(iter(rule.values()))
    assert decrypt_bytes(out, "yaml", identities) == doc
    # key order is part of the MAC: the same file with its keys sorted fails
    with pytest.raises(SopsMacMismatchError):
        decrypt_bytes(yaml.safe_dump(raw, sort_keys=True).encode(), "yaml", identities)


def test_mac_only_encrypted(identities: list) -> None:
    doc = {"user": "eve", "password": "p"}
    out = encrypt_document(doc, "json", RECIPIENTS, encrypted_regex="pass", mac_only_encrypted=True)
    assert json.loads(out)["sops"]["mac_only_encrypted"] is True
    # the clear value is outside the MAC now, so changing it is allowed
    changed = out.replace(b'"eve"', b'"mallory"')
    assert decrypt_bytes(changed, "json", identities) == {"user": "mallory", "password": "p"}
    # with the default, it is not
    strict = encrypt_document(doc, "json", RECIPIENTS, encrypted_regex="pass")
    with pytest.raises(SopsMacMismatchError):
        decrypt_bytes(strict.replace(b'"eve"', b'"mallory"'), "json", identities)


def test_encrypt_bytes_and_bad_requests(identities: list) -> None:
    out = encrypt_bytes(b"a: yes\nb: 2022-01-01\nc: 0x10\n", "yaml", RECIPIENTS)
    assert decrypt_bytes(out, "yaml", identities) == {"a": "yes", "b": "2022-01-01", "c": 16}
    with pytest.raises(SopsError, match="already has a 'sops' key"):
        encrypt_bytes((FIXTURES / "example.yaml").read_bytes(), "yaml", RECIPIENTS)
    with pytest.raises(SopsError, match="not an age X25519 recipient"):
        encrypt_document({"a": "b"}, "yaml", ["age1nope"])
    with pytest.raises(SopsError, match="at most one"):
        encrypt_document({"a": "b"}, "yaml", RECIPIENTS, encrypted_regex="a", encrypted_suffix="b")


def test_lastmodified_is_the_mac_aad(identities: list) -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    out = encrypt_document({"a": "b"}, "yaml", RECIPIENTS, lastmodified=moment)
    assert b'lastmodified: "2024-05-06T07:08:09Z"' in out or b"'2024-05-06T07:08:09Z'" in out
    with pytest.raises(SopsMacMismatchError):
        decrypt_bytes(out.replace(b"07:08:09Z", b"07:08:10Z"), "yaml", identities)


@pytest.mark.parametrize(
    ("name", "comment_line", "aad", "text"),
    [
        ("example.yaml", 5, "app2:db:", " private key for secret operations in app2"),
        ("example.yaml", 23, "this:is:a:nested:", " to any key"),
        ("example.ini", 0, "name:", "An example file for use with sops!"),
    ],
)
def test_comment_aad_is_the_enclosing_path(
    name: str, comment_line: int, aad: str, text: str, identities: list
) -> None:
    # Comments are left out of documents and MACs, but the rule for their additional
    # data (the path of the map holding them) is proven here on the real files.
    content = fixture_text(name)
    comment = content.splitlines()[comment_line].strip().lstrip("#; ")
    raw = yaml.safe_load(content)["sops"] if name.endswith(".yaml") else None
    if raw is None:
        enc = re.search(r"^age__list_0__map_enc\s*=\s*(.*)$", content, re.M).group(1)
        stanza = (RECIPIENTS[0], enc.replace("\\n", "\n"))
    else:
        stanza = (RECIPIENTS[0], raw["age"][0]["enc"])
    key = unwrap_data_key([stanza], identities)
    assert decrypt_value(comment, key, aad, where="comment") == text
    with pytest.raises(SopsMacMismatchError):
        decrypt_value(comment, key, ":", where="comment")


# --- Go-compatible details --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1234568000.0, "1234568000"),
        (25.4, "25.4"),
        (1e21, "1000000000000000000000"),
        (1e-7, "0.0000001"),
        (-0.0, "-0"),
        (float("inf"), "+Inf"),
    ],
)
def test_go_float_format(value: float, text: str) -> None:
    assert format_go_float(value) == text


def test_mac_only_encrypted_prefix_is_sops_constant() -> None:
    assert MAC_ONLY_ENCRYPTED_INIT.hex() == (
        "8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69"
    )


# --- the real age client ----------------------------------------------------------------

AGE = shutil.which("age")


@pytest.mark.skipif(AGE is None, reason="the real `age` CLI is not installed (apt-get install age)")
def test_real_age_cli_interop(identities: list) -> None:
    # 1. age opens the data key we wrapped, and that key decrypts our file's MAC
    out = yaml.safe_load(encrypt_document({"a": "b"}, "yaml", RECIPIENTS[1:]))
    enc = out["sops"]["age"][0]["enc"]
    opened = subprocess.run(
        [AGE, "--decrypt", "--identity", str(KEYS)],
        input=enc.encode(),
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert len(opened) == 32
    mac = decrypt_value(out["sops"]["mac"], opened, out["sops"]["lastmodified"], where="mac")
    assert re.fullmatch(r"[0-9A-F]{128}", mac)
    # 2. a key wrapped by age (armored) opens with pyrage through our unwrap
    wrapped = subprocess.run(
        [AGE, "--encrypt", "--armor", "--recipient", RECIPIENTS[0]],
        input=opened,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    assert unwrap_data_key([(RECIPIENTS[0], wrapped)], identities) == opened
    # 3. age opens the data key in a file written by sops, to the key pyrage gets
    fixture = yaml.safe_load(fixture_text("example.yaml"))["sops"]["age"][0]["enc"]
    by_age = subprocess.run(
        [AGE, "--decrypt", "--identity", str(KEYS)],
        input=fixture.encode(),
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert by_age == unwrap_data_key([(RECIPIENTS[0], fixture)], identities)
