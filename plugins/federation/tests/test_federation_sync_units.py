"""Unit tests of the sync's verification: signed ref lists and the object-graph check."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aspen.errors import InvalidArgumentError
from aspen_federation import limits
from aspen_federation.gitsync import check_complete
from aspen_federation.identity import ClusterKey
from aspen_federation.signedrefs import SignedRefs, SignedRefsError

SHA = "a" * 40


def test_signed_refs_verify_and_refuse_tampering() -> None:
    key = ClusterKey.generate()
    signed = SignedRefs.create(key, "forge:acme/w", {"refs/heads/main": SHA}, "http://h/acme/w.git")
    wire = signed.to_wire()
    assert SignedRefs.verified(wire, key=key.public, resource="forge:acme/w").refs == signed.refs
    # the git URL is a hint, outside the signature
    assert SignedRefs.verified(
        {**wire, "git_url": "http://elsewhere/"}, key=key.public, resource="forge:acme/w"
    )
    tampered = [
        {**wire, "refs": [["refs/heads/main", "b" * 40]]},
        {**wire, "refs": [["refs/heads/main", SHA], ["refs/heads/evil", SHA]]},
        {**wire, "timestamp": wire["timestamp"] + 1},
        {**wire, "resource": "forge:acme/other"},
    ]
    for bad in tampered:
        with pytest.raises(SignedRefsError):
            SignedRefs.verified(bad, key=key.public, resource=str(bad["resource"]))
    with pytest.raises(SignedRefsError, match="bad signature"):
        SignedRefs.verified(wire, key=ClusterKey.generate().public, resource="forge:acme/w")
    with pytest.raises(SignedRefsError, match="for forge:acme/w"):
        SignedRefs.verified(wire, key=key.public, resource="forge:acme/x")
    later = time.time() + limits.SIGNED_REFS_MAX_AGE_SECONDS + 5
    with pytest.raises(SignedRefsError, match="stale"):
        SignedRefs.verified(wire, key=key.public, resource="forge:acme/w", now=later)


@pytest.mark.parametrize("ref", ["HEAD", "refs/heads/" + "x" * limits.MAX_SYNC_REF_BYTES])
def test_signed_refs_refuse_odd_names(ref: str) -> None:
    key = ClusterKey.generate()
    wire = SignedRefs.create(key, "forge:a/b", {ref: SHA}, "").to_wire()
    with pytest.raises(SignedRefsError, match="refused ref name"):
        SignedRefs.verified(wire, key=key.public, resource="forge:a/b")


@pytest.mark.parametrize("git", [True, False], ids=["git-rev-list", "pack-pass"])
def test_check_complete_finds_a_missing_or_altered_object(
    tmp_path: Path, git: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not git:  # the path without a git executable
        monkeypatch.setattr("shutil.which", lambda name: None)
    from dulwich.objects import Blob, Commit, Tree
    from dulwich.repo import Repo

    repo = Repo.init_bare(str(tmp_path / "r"), mkdir=True)
    blob = Blob.from_string(b"hello\n")
    tree = Tree()
    tree.add(b"f", 0o100644, blob.id)
    commit = Commit()
    commit.tree = tree.id
    commit.author = commit.committer = b"T <t@example.com>"
    commit.author_time = commit.commit_time = 0
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = b"m"
    for obj in (tree, commit):
        repo.object_store.add_object(obj)
    # the blob is absent (as an object altered on the wire would be: stored under
    # another id): refused, naming it
    with pytest.raises(InvalidArgumentError, match=blob.id.decode()):
        check_complete(repo, {commit.id})
    repo.object_store.add_object(blob)
    assert check_complete(repo, {commit.id}) == 3


def test_signed_state_verifies_and_refuses_tampering() -> None:
    from aspen_federation.signedstate import SignedState, SignedStateError

    key = ClusterKey.generate()
    wire = SignedState.create(key, "kv:/app/", {"revision": 7, "digest": "ab"}).to_wire()
    got = SignedState.verified(wire, key=key.public, resource="kv:/app/")
    assert got.state == {"revision": 7, "digest": "ab"}
    import msgpack

    for bad in (
        {**wire, "state": msgpack.packb({"revision": 8, "digest": "ab"})},
        {**wire, "resource": "kv:/other/"},
        {**wire, "timestamp": wire["timestamp"] - 1},
    ):
        with pytest.raises(SignedStateError):
            SignedState.verified(bad, key=key.public, resource=str(bad["resource"]))
    with pytest.raises(SignedStateError, match="bad signature"):
        SignedState.verified(wire, key=ClusterKey.generate().public, resource="kv:/app/")
    with pytest.raises(SignedStateError, match="stale"):
        later = time.time() + limits.SIGNED_REFS_MAX_AGE_SECONDS + 5
        SignedState.verified(wire, key=key.public, resource="kv:/app/", now=later)


def test_kv_snapshot_digest_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    from aspen.errors import ResourceExhaustedError
    from aspen_federation.kvsync import Snapshot

    one, two = Snapshot(), Snapshot()
    one.add(b"/a", b"1")
    two.add(b"/a", b"2")
    assert one.digest != two.digest and (one.count, one.bytes) == (1, 3)
    assert one.matches({"digest": one.digest, "count": 1, "bytes": 3})
    assert not one.matches({"digest": two.digest, "count": 1, "bytes": 3})
    monkeypatch.setattr(limits, "KV_SYNC_MAX_BYTES", 1024)  # the bound, not its size
    big = Snapshot()
    with pytest.raises(ResourceExhaustedError, match="KV_SYNC_MAX_BYTES"):
        big.add(b"/k", b"x" * 1025)


def test_a_mirror_runs_early_on_gossip_about_it_unless_backing_off() -> None:
    from aspen_federation.mirror import MirrorWake, gossip_matches, runs_now

    a, b = "aa" * 32, "bb" * 32
    forge = {"key": a, "kind": "forge", "name": "acme/w", "next_run": 2000.0, "failures": 0}
    pijul = {**forge, "kind": "pijul", "name": "poems:main"}
    blob = {**forge, "kind": "blob", "name": "releases/"}
    assert gossip_matches(forge, (a, "ref.updated", "acme/w"))
    assert gossip_matches(forge, (a, "repo.created", "acme/w"))
    assert not gossip_matches(forge, (b, "ref.updated", "acme/w"))  # another sender
    assert not gossip_matches(forge, (a, "ref.updated", "acme/other"))
    assert gossip_matches(pijul, (a, "channel.updated", "poems:main"))
    assert not gossip_matches(pijul, (a, "channel.updated", "poems:dev"))
    assert gossip_matches(blob, (a, "blob.available", "releases/v1.tar"))
    assert not gossip_matches(blob, (a, "blob.available", "private/x"))
    poked = frozenset({(a, "ref.updated", "acme/w")})
    assert not runs_now(forge, 1000.0, frozenset())  # not due, nothing heard
    assert runs_now(forge, 1000.0, poked)  # heard: runs before its interval
    assert runs_now(forge, 3000.0, frozenset())  # due
    failing = {**forge, "failures": 2}
    assert not runs_now(failing, 1000.0, poked)  # gossip does not cut a back-off short

    wake = MirrorWake()
    for i in range(limits.MIRROR_GOSSIP_PENDING + 10):
        wake.on_event({"payload": {"sender": a, "kind": "ref.updated", "subject": f"r/{i}"}})
    wake.on_event({"payload": "not a map"})
    assert len(wake.pending) == limits.MIRROR_GOSSIP_PENDING  # bounded


def test_mirror_backoff_doubles_up_to_its_bound() -> None:
    from aspen_federation.mirror import backoff, mirror_id

    assert [backoff(60, n) for n in range(3)] == [60, 120, 240]
    assert backoff(60, 1000) == limits.MIRROR_MAX_BACKOFF_SECONDS
    assert (
        mirror_id(b"k", "kv", "/a/") == mirror_id(b"k", "kv", "/a/") != mirror_id(b"k", "kv", "/b/")
    )


def test_fetched_packs_are_sent_as_they_are(tmp_path: Path) -> None:
    """The pack records copy every stored object byte for byte: a pack written from them
    holds the same objects, all readable."""
    import shutil
    import subprocess

    from dulwich.object_format import SHA1
    from dulwich.pack import write_pack_data
    from dulwich.repo import Repo

    from aspen_federation.gitsync import pack_records, reusable_packs

    if shutil.which("git") is None:
        pytest.skip("needs a git executable to make a pack with deltas")
    work = tmp_path / "w"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    for i in range(20):
        (work / "f.txt").write_text("".join(f"line {j}\n" for j in range(200 + i)))
        subprocess.run(["git", "-C", str(work), "add", "f.txt"], check=True)
        subprocess.run(
            ["git", "-C", str(work), "-c", "user.name=T", "-c", "user.email=t@e",
             "commit", "-q", "-m", f"c{i}"],
            check=True,
        )  # fmt: skip
    subprocess.run(["git", "-C", str(work), "gc", "-q", "--aggressive"], check=True)
    src = Repo(str(work))
    packs = reusable_packs(src, {}, "refs/remotes/x/")
    assert packs is not None and len(packs) == 1
    count, records = pack_records(packs, [])
    out = tmp_path / "out.pack"
    with out.open("wb") as f:
        write_pack_data(f.write, records, SHA1, num_records=count)
    dst = Repo.init_bare(str(tmp_path / "dst"), mkdir=True)
    with out.open("rb") as f:
        dst.object_store.add_thin_pack(f.read, None)
    dst = Repo(str(tmp_path / "dst"))
    ids = {sha for sha, _, _ in packs[0].index.iterentries()}
    assert count == len(ids) == len(list(dst.object_store))
    for sha in ids:
        assert dst.object_store[sha.hex().encode()].id == sha.hex().encode()
