"""``aspen secrets sops decrypt|encrypt`` through click's CliRunner (no node needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from aspen.cli.context import CliContext
from aspen.cli.output import EXIT_USAGE
from aspen_secrets.sops.cli import EXIT_MAC_MISMATCH, sops_cli

FIXTURES = Path(__file__).parent / "fixtures" / "sops"
KEYS = str(FIXTURES / "keys.txt")
RECIPIENT = "age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw"
OTHER = "age1tmaae3ld5vpevmsh5yacsauzx8jetg300mpvc4ugp5zr5l6ssq9sla97ep"


def run(*args: str, env: dict[str, str] | None = None, obj: object = None) -> Result:
    return CliRunner().invoke(sops_cli, list(args), env=env or {}, obj=obj)


def expected(name: str) -> object:
    return json.loads((FIXTURES / f"{name}.expected.json").read_text())


def one_line_error(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    "name", ["example.yaml", "example.json", "example.ini", "example.txt", "example.env"]
)
def test_decrypt_json(name: str) -> None:
    result = run("decrypt", str(FIXTURES / name), "--age-key-file", KEYS, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == expected(name)


def test_decrypt_native_format_with_env_key_file() -> None:
    result = run("decrypt", str(FIXTURES / "example.yaml"), env={"SOPS_AGE_KEY_FILE": KEYS})
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load(result.stdout) == expected("example.yaml")
    binary = run("decrypt", str(FIXTURES / "example.txt"), "--age-key-file", KEYS)
    assert binary.stdout == expected("example.txt")["data"]


def test_decrypt_output_format() -> None:
    result = run(
        "decrypt", str(FIXTURES / "example.env"), "--age-key-file", KEYS, "--output-format", "json"
    )
    assert json.loads(result.stdout) == expected("example.env")
    dotenv = run("decrypt", str(FIXTURES / "example.env"), "--age-key-file", KEYS)
    assert "MULTILINE=line one\\nline two\n" in dotenv.stdout
    nested = run(
        "decrypt", str(FIXTURES / "example.yaml"), "--age-key-file", KEYS, "--output-format", "ini"
    )
    assert nested.exit_code == EXIT_USAGE
    one_line_error(nested)


def test_global_json_flag_of_the_aspen_cli() -> None:
    cli = CliContext("127.0.0.1:1", None, True, 1.0, lambda: None)
    result = run("decrypt", str(FIXTURES / "example.json"), "--age-key-file", KEYS, obj=cli)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == expected("example.json")


def test_mac_mismatch_exit_code(tmp_path: Path) -> None:
    tampered = tmp_path / "t.yaml"
    text = (FIXTURES / "example.yaml").read_text()
    tampered.write_text(text.replace("remain in clear text\n", "remain in clear text!\n", 1))
    result = run("decrypt", str(tampered), "--age-key-file", KEYS, "--json")
    assert result.exit_code == EXIT_MAC_MISMATCH != EXIT_USAGE
    assert "MAC mismatch" in one_line_error(result)


@pytest.mark.parametrize(
    ("content", "message"),
    [("a: [\n  b\n", "bad YAML"), ("a: 1\n", "sops metadata not found")],
)
def test_malformed_input_exit_code(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = run("decrypt", str(path), "--age-key-file", KEYS)
    assert result.exit_code == EXIT_USAGE
    assert message in one_line_error(result)


def test_missing_keys_or_files(tmp_path: Path) -> None:
    no_key = run("decrypt", str(FIXTURES / "example.yaml"))
    assert no_key.exit_code == EXIT_USAGE and "SOPS_AGE_KEY_FILE" in one_line_error(no_key)
    bad_key = run("decrypt", str(FIXTURES / "example.yaml"), "--age-key-file", str(tmp_path / "x"))
    assert bad_key.exit_code == EXIT_USAGE and "cannot read" in one_line_error(bad_key)
    no_file = run("decrypt", str(tmp_path / "nope.yaml"), "--age-key-file", KEYS)
    assert no_file.exit_code == EXIT_USAGE and "cannot read" in one_line_error(no_file)
    stranger = tmp_path / "stranger.txt"
    stranger.write_text(
        "AGE-SECRET-KEY-1FNDKZQ9D0WMF5YV8TQ8FXKAFEATH8MXJWG27K0WH9JSWMMC6DJ0S0ZECCP\n"
    )
    wrong = run("decrypt", str(FIXTURES / "example.yaml"), "--age-key-file", str(stranger))
    assert wrong.exit_code == EXIT_USAGE and RECIPIENT in one_line_error(wrong)


#: A cleartext marker long enough not to turn up in random base64 by chance.
EVE = "eve-q7k2x9"


@pytest.mark.parametrize(
    ("name", "content", "document"),
    [
        ("s.yaml", f"user: {EVE}\nport: 5432\nok: true\n", {"user": EVE, "port": 5432, "ok": True}),
        ("s.json", f'{{"user": "{EVE}", "ratio": 0.5}}', {"user": EVE, "ratio": 0.5}),
        ("s.env", f"USER={EVE}\nTOKEN=abc\n", {"USER": EVE, "TOKEN": "abc"}),
        ("s.ini", f"[db]\nuser = {EVE}\n", {"db": {"user": EVE}}),
    ],
)
def test_encrypt_then_decrypt(tmp_path: Path, name: str, content: str, document: object) -> None:
    plain = tmp_path / name
    plain.write_text(content)
    out = tmp_path / f"enc.{name}"
    result = run("encrypt", str(plain), "--age", f"{RECIPIENT},{OTHER}", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert EVE.encode() not in out.read_bytes()
    back = run("decrypt", str(out), "--age-key-file", KEYS, "--json")
    assert back.exit_code == 0, back.stderr
    assert json.loads(back.stdout) == document


def test_encrypt_to_stdout_with_env_recipients_and_rules(tmp_path: Path) -> None:
    plain = tmp_path / "p.yaml"
    plain.write_text("user: eve\npassword: hunter2\n")
    result = run(
        "encrypt", str(plain), "--encrypted-regex", "^password$", env={"SOPS_AGE_RECIPIENTS": OTHER}
    )
    assert result.exit_code == 0, result.stderr
    raw = yaml.safe_load(result.stdout)
    assert raw["user"] == "eve" and raw["password"].startswith("ENC[AES256_GCM,")
    assert raw["sops"]["age"][0]["recipient"] == OTHER


def test_encrypt_errors(tmp_path: Path) -> None:
    plain = tmp_path / "p.yaml"
    plain.write_text("a: b\n")
    no_recipient = run("encrypt", str(plain))
    assert no_recipient.exit_code == EXIT_USAGE and "--age" in one_line_error(no_recipient)
    bad_recipient = run("encrypt", str(plain), "--age", "age1bad")
    assert bad_recipient.exit_code == EXIT_USAGE
    one_line_error(bad_recipient)
    already = run("encrypt", str(FIXTURES / "example.yaml"), "--age", RECIPIENT)
    assert already.exit_code == EXIT_USAGE and "already" in one_line_error(already)
    out = tmp_path / "never.yaml"
    run("encrypt", str(plain), "--age", "age1bad", "-o", str(out))
    assert not out.exists()
