"""The Vault-compatible HTTP API, driven with raw ``httpx`` (what hvac cannot send) and
with ``hvac`` for the mount table."""

from __future__ import annotations

import math
from typing import Any

import httpx
import hvac
import pytest

from aspen.errors import AspenError
from aspen_secrets import engines, limits
from aspen_secrets.engines.base import Engine, route
from aspen_secrets.logical import Operation, Request, Response

JSON = "application/json"


class EchoEngine(Engine):
    """A tiny engine for frame tests: echoes requests, answers raw bodies and statuses."""

    type_name = "echo"

    @route(r"echo/(?P<name>[^/]+)", Operation.READ, Operation.WRITE, Operation.LIST)
    async def echo(self, request: Request, name: str) -> dict[str, Any]:
        return {"name": name, "op": request.operation.value, "data": request.data}

    @route(r"empty", Operation.WRITE, Operation.DELETE)
    async def empty(self, request: Request) -> None:
        return None

    @route(r"raw", Operation.READ)
    async def raw(self, request: Request) -> Response:
        return Response(
            raw=b"-----BEGIN X-----\n", content_type="application/pem-certificate-chain"
        )

    @route(r"gone", Operation.READ)
    async def gone(self, request: Request) -> Response:
        return Response(data={"why": "deleted"}, status=404, warnings=("careful",))


@pytest.fixture
def echo_type(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register :class:`EchoEngine` as the mount type ``echo``."""
    monkeypatch.setitem(engines.ENGINE_TYPES, "echo", f"{__name__}:EchoEngine")
    return "echo"


@pytest.fixture
def http(vault_url: str, secrets_node: Any) -> Any:
    """An httpx client on the API with the root token."""
    with httpx.Client(
        base_url=vault_url, headers={"X-Vault-Token": secrets_node.token}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def echo(vault: hvac.Client, echo_type: str) -> str:
    vault.sys.enable_secrets_engine(echo_type, path="echo")
    return "echo"


def _errors(resp: httpx.Response) -> list[str]:
    assert resp.headers["content-type"] == JSON
    return resp.json()["errors"]


def test_token_is_required_and_checked(vault_url: str, secrets_node: Any) -> None:
    with httpx.Client(base_url=vault_url) as c:
        missing = c.get("/v1/secret/data/app")
        assert missing.status_code == 403 and _errors(missing) == ["permission denied"]
        wrong = c.get("/v1/sys/mounts", headers={"X-Vault-Token": "aspen_not-the-token-at-all"})
        assert wrong.status_code == 403 and _errors(wrong) == ["permission denied"]
        bearer = c.get("/v1/sys/mounts", headers={"Authorization": f"Bearer {secrets_node.token}"})
        assert bearer.status_code == 200
        health = c.get("/v1/sys/health")  # no token needed
        assert health.status_code == 200 and health.json()["sealed"] is False


def test_lookup_self_reports_the_root_token(vault: hvac.Client) -> None:
    assert vault.is_authenticated()
    info = vault.auth.token.lookup_self()["data"]
    assert info["policies"] == ["root"]


def test_unknown_mount_and_path_are_404(http: httpx.Client) -> None:
    resp = http.get("/v1/nothing-here/x")
    assert resp.status_code == 404 and "no handler for route" in _errors(resp)[0]
    assert http.get("/v1/").status_code == 404
    assert http.get("/elsewhere").status_code == 404


def test_unsupported_method_and_operation_are_405(http: httpx.Client, echo: str) -> None:
    assert http.request("FROB", "/v1/echo/echo/x").status_code == 405
    assert http.delete("/v1/echo/echo/x").status_code == 405
    assert http.post("/v1/sys/key-status", json={}).status_code == 405


def test_envelope_content_type_and_query_data(http: httpx.Client, echo: str) -> None:
    resp = http.get("/v1/echo/echo/n1", params={"a": "1", "b": "two"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == JSON  # exactly: no charset
    body = resp.json()
    assert body["data"] == {"name": "n1", "op": "read", "data": {"a": "1", "b": "two"}}
    assert body["lease_id"] == "" and body["renewable"] is False and body["lease_duration"] == 0
    assert body["wrap_info"] is None and body["warnings"] is None and body["auth"] is None
    assert body["mount_type"] == "echo" and len(body["request_id"]) == 36


def test_list_verb_and_list_query(http: httpx.Client, echo: str) -> None:
    for resp in (http.request("LIST", "/v1/echo/echo/n"), http.get("/v1/echo/echo/n?list=true")):
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"]["op"] == "list"


def test_write_body_empty_answer_raw_and_status(http: httpx.Client, echo: str) -> None:
    posted = http.post("/v1/echo/echo/w", json={"k": [1, 2], "m": {"x": True}})
    assert posted.json()["data"]["data"] == {"k": [1, 2], "m": {"x": True}}
    put = http.put("/v1/echo/echo/w", content=b"", headers={"Content-Type": JSON})
    assert put.json()["data"]["data"] == {}
    empty = http.post("/v1/echo/empty", json={})
    assert empty.status_code == 204 and empty.content == b""
    assert http.delete("/v1/echo/empty").status_code == 204
    raw = http.get("/v1/echo/raw")
    assert raw.status_code == 200 and raw.content == b"-----BEGIN X-----\n"
    assert raw.headers["content-type"] == "application/pem-certificate-chain"
    gone = http.get("/v1/echo/gone")
    assert gone.status_code == 404
    assert gone.json()["data"] == {"why": "deleted"} and gone.json()["warnings"] == ["careful"]


def test_bad_bodies_are_refused(http: httpx.Client, echo: str) -> None:
    bad = http.post("/v1/echo/echo/x", content=b"{not json", headers={"Content-Type": JSON})
    assert bad.status_code == 400 and "JSON" in _errors(bad)[0]
    array = http.post("/v1/echo/echo/x", content=b"[1]", headers={"Content-Type": JSON})
    assert array.status_code == 400
    big = b'{"v": "' + b"x" * limits.SECRETS_MAX_REQUEST_BYTES + b'"}'
    too_big = http.post("/v1/echo/echo/x", content=big, headers={"Content-Type": JSON})
    assert too_big.status_code == 413 and "SECRETS_MAX_REQUEST_BYTES" in _errors(too_big)[0]


def test_patch_takes_merge_patch_json(vault: hvac.Client, http: httpx.Client) -> None:
    vault.secrets.kv.v2.create_or_update_secret(path="p", secret={"a": "1", "b": "2"})
    resp = http.patch(
        "/v1/secret/data/p",
        content=b'{"data": {"b": null, "c": "3"}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 200, resp.text
    assert vault.secrets.kv.v2.read_secret_version(path="p", raise_on_deleted_version=True)["data"][
        "data"
    ] == {
        "a": "1",
        "c": "3",
    }


def test_health_codes_follow_vault_query_parameters(vault_url: str) -> None:
    with httpx.Client(base_url=vault_url) as c:
        body = c.get("/v1/sys/health").json()
        assert body["initialized"] is True and body["standby"] is False
        assert c.get("/v1/sys/health?activecode=299").status_code == 299
        head = c.head("/v1/sys/health")
        assert head.status_code == 200 and head.content == b""
        assert c.post("/v1/sys/health").status_code == 405


def test_mounts_enable_list_read_disable(vault: hvac.Client, http: httpx.Client) -> None:
    listed = vault.sys.list_mounted_secrets_engines()
    for path in ("secret/", "transit/", "pki/"):
        assert path in listed["data"] and path in listed  # also at the top level, as Vault
    assert listed["data"]["secret/"]["options"] == {"version": "2"}

    vault.sys.enable_secrets_engine("kv", path="team", options={"version": "2"})
    assert vault.sys.list_mounted_secrets_engines()["data"]["team/"]["type"] == "kv"
    vault.secrets.kv.v2.create_or_update_secret(path="x", secret={"v": "1"}, mount_point="team")
    assert http.get("/v1/sys/mounts/team").json()["data"]["type"] == "kv"

    with pytest.raises(hvac.exceptions.InvalidRequest, match="already in use"):
        vault.sys.enable_secrets_engine("kv", path="team/sub")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="only KV version 2"):
        vault.sys.enable_secrets_engine("kv", path="v1kv", options={"version": "1"})
    with pytest.raises(hvac.exceptions.InvalidRequest, match="unknown secrets engine"):
        vault.sys.enable_secrets_engine("nope", path="nope")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="reserved"):
        vault.sys.enable_secrets_engine("kv", path="sys/x")

    vault.sys.disable_secrets_engine("team")
    assert "team/" not in vault.sys.list_mounted_secrets_engines()["data"]
    assert http.get("/v1/team/data/x").status_code == 404
    # as in Vault, disabling a path where nothing is mounted succeeds (retries are harmless)
    assert http.delete("/v1/sys/mounts/team").status_code == 204
    # a new mount at the same path starts empty: the old state was deleted
    vault.sys.enable_secrets_engine("kv", path="team")
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.secrets.kv.v2.read_secret_version(
            path="x", mount_point="team", raise_on_deleted_version=True
        )


def test_unloadable_engine_is_503_and_the_rest_works(
    vault: hvac.Client, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(engines.ENGINE_TYPES, "broken", "aspen_secrets_no_such_module:Engine")
    vault.sys.enable_secrets_engine("broken", path="broken")
    resp = http.get("/v1/broken/anything")
    assert resp.status_code == 503 and "not available" in _errors(resp)[0]
    vault.secrets.kv.v2.create_or_update_secret(path="still", secret={"ok": "yes"})
    assert vault.secrets.kv.v2.read_secret_version(path="still", raise_on_deleted_version=True)[
        "data"
    ]["data"] == {"ok": "yes"}


def test_rotate_and_key_status(vault: hvac.Client, http: httpx.Client) -> None:
    vault.secrets.kv.v2.create_or_update_secret(path="before", secret={"v": "old"})
    status = vault.sys.get_encryption_key_status()
    term = status["data"]["term"] if "data" in status else status["term"]
    assert term == 1
    vault.sys.rotate_encryption_key()
    after = http.get("/v1/sys/key-status").json()
    assert after["data"]["term"] == 2 and after["term"] == 2
    assert after["data"]["install_time"].endswith("Z")
    vault.secrets.kv.v2.create_or_update_secret(path="after", secret={"v": "new"})
    assert vault.secrets.kv.v2.read_secret_version(path="before", raise_on_deleted_version=True)[
        "data"
    ]["data"] == {"v": "old"}
    assert vault.secrets.kv.v2.read_secret_version(path="after", raise_on_deleted_version=True)[
        "data"
    ]["data"] == {"v": "new"}


def test_default_listen_address_follows_the_dev_node_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aspen.http import listen_address
    from aspen_secrets.plugin import DEFAULT_HTTP_PORT

    monkeypatch.delenv("ASPEN_DEV_NODE_INDEX", raising=False)
    assert listen_address("", DEFAULT_HTTP_PORT) == "127.0.0.1:8200"
    monkeypatch.setenv("ASPEN_DEV_NODE_INDEX", "2")
    assert listen_address(None, DEFAULT_HTTP_PORT) == "127.0.0.1:8202"
    assert listen_address(" 0.0.0.0:9 ", DEFAULT_HTTP_PORT) == "0.0.0.0:9"
    assert listen_address("Off", DEFAULT_HTTP_PORT) is None


def test_http_bind_failure_leaves_the_node_running(
    secrets_node_factory: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        monkeypatch.setenv("ASPEN_SECRETS_HTTP_LISTEN", f"127.0.0.1:{port}")
        node = secrets_node_factory(tmp_path / "node", ready=False)
        with node.client() as c:
            status = c.call("secrets.status")
            assert status["http_address"] == ""
            assert status["http_error"].startswith(f"cannot listen on 127.0.0.1:{port}")
            answer = c.call("secrets.request", {"operation": "read", "path": "sys/mounts"})
            assert "secret/" in answer["data"]  # RPC still serves


def test_each_node_keeps_its_service_in_its_plugin_state(
    secrets_node_factory: Any, tmp_path: Any
) -> None:
    from aspen_secrets import plugin
    from aspen_secrets.plugin import service_for

    nodes = [secrets_node_factory(tmp_path / f"n{i}") for i in (1, 2)]
    services = [service_for(n.node) for n in nodes]
    for node, service in zip(nodes, services, strict=True):
        assert service is node.node.plugin_state("secrets")["service"]
        assert service.node is node.node
        assert service.http_address == node.http_address
    assert services[0] is not services[1]
    state = {k: v for k, v in vars(plugin).items() if not k.startswith("__")}
    assert not [k for k, v in state.items() if isinstance(v, dict | list | set)]  # none global
    nodes[0].stop()
    assert service_for(nodes[0].node) is None  # dropped at shutdown; the other runs on
    assert service_for(nodes[1].node) is services[1]


def test_nan_and_infinity_are_refused(http: httpx.Client) -> None:
    headers = {"Content-Type": JSON}
    for number in ("NaN", "Infinity", "-Infinity", "1e999"):
        body = b'{"data": {"x": %s}}' % number.encode()
        resp = http.post("/v1/secret/data/n", content=body, headers=headers)
        assert resp.status_code == 400, (number, resp.text)
        assert number in _errors(resp)[0]
    assert http.get("/v1/secret/data/n").status_code == 404  # nothing was stored
    assert http.post("/v1/secret/data/n", json={"data": {"x": 1.5e300}}).status_code == 200


def test_undecodable_percent_encoded_paths_are_refused(http: httpx.Client) -> None:
    for path in ("%ff%fe", "%fe%ff", "a%80"):
        written = http.post(f"/v1/secret/data/{path}", json={"data": {"v": path}})
        assert written.status_code == 400, (path, written.text)
        assert "not UTF-8" in _errors(written)[0]
        assert http.get(f"/v1/secret/data/{path}").status_code == 400
    assert http.get("/v1/secret/data/x?version=%ff").status_code == 400
    assert http.post("/v1/secret/data/caf%C3%A9", json={"data": {"v": "1"}}).status_code == 200
    assert http.get("/v1/secret/data/café").json()["data"]["data"] == {"v": "1"}
    keys = http.request("LIST", "/v1/secret/metadata/").json()["data"]["keys"]
    assert keys == ["café"]  # U+FFFD never became a key


def test_form_bodies_are_parsed_like_vault(http: httpx.Client, echo: str) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    resp = http.post("/v1/echo/echo/f", content=b"a=1&b=x+y&c=&d=1&d=2", headers=form)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["data"] == {"a": "1", "b": "x y", "c": "", "d": "1,2"}
    as_json = http.post("/v1/echo/echo/f", content=b' {"a": [1]}', headers=form)
    assert as_json.json()["data"]["data"] == {"a": [1]}  # a JSON-looking body stays JSON
    text = {"Content-Type": "text/plain"}
    plain = http.post("/v1/echo/echo/f", content=b'{"a": 2}', headers=text)
    assert plain.json()["data"]["data"] == {"a": 2}  # Vault ignores other content types
    bad = http.post("/v1/echo/echo/f", content=b"a=%ff", headers=form)
    assert bad.status_code == 400 and "form data" in _errors(bad)[0]


def test_form_bodies_work_on_real_engines(http: httpx.Client) -> None:
    assert http.post("/v1/transit/keys/fk").status_code in (200, 204)
    sealed = http.post("/v1/transit/encrypt/fk", data={"plaintext": "aGk="})
    assert sealed.status_code == 200, sealed.text
    ciphertext = sealed.json()["data"]["ciphertext"]
    opened = http.post("/v1/transit/decrypt/fk", data={"ciphertext": ciphertext})
    assert opened.json()["data"]["plaintext"] == "aGk="
    assert http.post("/v1/secret/config", data={"max_versions": "3"}).status_code in (200, 204)
    assert http.get("/v1/secret/config").json()["data"]["max_versions"] == 3


def test_nan_over_rpc_is_refused_too(secrets_node: Any, http: httpx.Client) -> None:
    request = {"operation": "write", "path": "secret/data/r", "data": {"data": {"x": math.nan}}}
    with secrets_node.client() as c, pytest.raises(AspenError) as refused:
        c.call("secrets.request", request)
    assert refused.value.code == "invalid_argument" and "NaN" in refused.value.message
    assert http.get("/v1/secret/data/r").status_code == 404
