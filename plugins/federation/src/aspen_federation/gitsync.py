"""The git half of a pull sync, blocking (run it in a worker thread).

1. :func:`fetch_verified` fetches, over the origin forge's smart HTTP with the granted
   token, the objects a signed ref list names and this node lacks, into a per-remote
   staging store under the node's data directory (what was fetched stays: a re-run
   resumes, and the staging refs make the next fetch incremental). dulwich indexes each
   object by the hash of its content, so an object altered on the way is not the object
   the signed refs name: :func:`check_complete` then finds it missing and the sync fails
   before anything is visible.
2. :func:`push_local` pushes the verified refs into the local forge, renamed under
   ``refs/remotes/<cluster id>/``, through the forge's own push path (its storage, its one
   ``kv.txn``), atomically: all refs or none. Refs outside that namespace are never
   touched; refs in it that the origin no longer has are deleted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aspen.errors import AspenError, CompareFailedError, InvalidArgumentError, UnavailableError
from aspen_federation import limits
from aspen_federation.signedrefs import SignedRefs

__all__ = [
    "RefsMoved",
    "check_complete",
    "fetch_verified",
    "namespace",
    "pack_records",
    "push_local",
    "reusable_packs",
]

_ZERO = b"0" * 40
_GITLINK = 0o160000
_COMMIT, _TREE, _TAG = 1, 2, 4
#: In the staging store: the refs last pushed into the local forge and the packs they sent.
_PUSHED = "aspen-pushed.json"


class RefsMoved(CompareFailedError):
    """The origin's refs changed between signing and fetching: read them again."""


def namespace(cluster_id: str) -> str:
    """Where a remote cluster's refs live in the local repository."""
    return f"refs/remotes/{cluster_id}/"


def _client(url: str, token: str) -> tuple[Any, str]:
    from dulwich.client import HttpGitClient

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgumentError(f"not a git HTTP URL: {url!r}")
    base = f"{parts.scheme}://{parts.netloc}/"
    return HttpGitClient(base, username="git", password=token), parts.path.lstrip("/")


def _open(store_dir: Path) -> Any:
    from dulwich.repo import Repo

    if (store_dir / "objects").is_dir():
        return Repo(str(store_dir))
    store_dir.mkdir(parents=True, exist_ok=True)
    return Repo.init_bare(str(store_dir))


def fetch_verified(store_dir: Path, signed: SignedRefs, token: str, git_url: str = "") -> Any:
    """Fetch what ``signed`` names into the staging store (from ``git_url``, default the
    origin's hint); the store, every object checked."""
    from dulwich.errors import GitProtocolError, HangupException

    repo = _open(store_dir)
    wanted = {sha.encode() for _, sha in signed.refs}
    missing = sorted(s for s in wanted if s not in repo.object_store)
    if missing:
        url = git_url or signed.git_url
        client, path = _client(url, token)

        def determine_wants(refs: dict[bytes, bytes], depth: Any = None) -> list[bytes]:
            advertised = set(refs.values())
            if any(s not in advertised for s in missing):
                raise RefsMoved("the origin's refs moved since they were signed")
            return missing

        try:
            _fetch(client, path, repo, determine_wants)
        except AspenError:
            raise  # RefsMoved, from determine_wants
        except (GitProtocolError, HangupException, OSError) as exc:
            raise UnavailableError(f"fetch from {url} failed: {exc}") from None
        except Exception as exc:  # a corrupt pack: checksum, zlib, delta, object format…
            raise InvalidArgumentError(
                f"fetched pack failed verification: {type(exc).__name__}: {exc}"
            ) from None
    repo = _open(store_dir)  # sees the pack just indexed
    check_complete(repo, wanted)
    # the staging refs: the next fetch offers them as haves (incremental)
    for ref in list(repo.refs.keys()):
        if ref.startswith(b"refs/") and ref.decode() not in dict(signed.refs):
            del repo.refs[ref]
    for name, sha in signed.refs:
        repo.refs[name.encode()] = sha.encode()
    return repo


def _fetch(client: Any, path: str, repo: Any, determine_wants: Any) -> None:
    """Fetch the pack into a temporary file in the store, then index it with the forge's
    receiver (``git index-pack --fix-thin`` when git is installed, else dulwich), each
    object's id computed from its bytes."""
    import tempfile

    from aspen_forge.storage.indexpack import BadPack, PackTooLarge, git_available, receive_pack

    with tempfile.TemporaryFile(dir=repo.path, prefix="incoming-") as f:
        client.fetch_pack(path, determine_wants, repo.get_graph_walker(), f.write)
        if not f.tell():
            return
        f.seek(0)
        store = Path(repo.object_store.path)
        git_dir = Path(repo.path) if git_available() else None
        try:
            receive_pack(
                repo.object_store,
                store,
                git_dir,
                f.read,
                f.read,
                limits.SYNC_MAX_PACK_BYTES,
            )
        except PackTooLarge:
            raise InvalidArgumentError(
                f"fetched pack over SYNC_MAX_PACK_BYTES ({limits.SYNC_MAX_PACK_BYTES})"
            ) from None
        except BadPack as exc:
            raise InvalidArgumentError(f"fetched pack failed verification: {exc}") from None


def check_complete(repo: Any, wanted: set[bytes]) -> int:
    """Every object reachable from ``wanted`` is in the store (``invalid_argument`` naming
    the first missing one); how many were checked. The graph is read in one sequential
    pass over each pack (each delta resolved once, from its base; blobs never parsed),
    not object by object; with git installed, ``git rev-list --objects`` walks it."""
    listed = _rev_list(repo, wanted)
    if listed is not None:
        store = repo.object_store
        for sha in listed:
            if sha not in store:
                raise InvalidArgumentError(
                    f"object {sha.decode()} named by the signed refs is missing or does not "
                    "match its id: sync refused"
                )
        if len(listed) > limits.MAX_SYNC_OBJECTS:
            raise InvalidArgumentError(f"over MAX_SYNC_OBJECTS ({limits.MAX_SYNC_OBJECTS}) objects")
        return len(listed)
    edges = _graph(repo)
    seen: set[bytes] = set()
    stack = list(wanted)
    while stack:
        sha = stack.pop()
        if sha in seen:
            continue
        seen.add(sha)
        children = edges.get(sha)
        if children is None:
            raise InvalidArgumentError(
                f"object {sha.decode()} named by the signed refs is missing or does not "
                "match its id: sync refused"
            )
        stack.extend(children)
    return len(seen)


def _rev_list(repo: Any, wanted: set[bytes]) -> list[bytes] | None:
    """Every object id reachable from ``wanted`` as ``git rev-list`` lists them (without
    reading blobs: the caller checks those are present), or ``None`` without git. A
    commit or tree it cannot read: ``invalid_argument``."""
    import os
    import shutil
    import subprocess

    if shutil.which("git") is None:
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_DIR": str(repo.path), "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo.path)})
    done = subprocess.run(
        ["git", "rev-list", "--objects", "--no-object-names", "--stdin"],
        input=b"".join(sha + b"\n" for sha in sorted(wanted)),
        capture_output=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().replace("\n", " ")[:200]
        raise InvalidArgumentError(
            f"the objects named by the signed refs are incomplete ({message}): sync refused"
        )
    return done.stdout.split()


def _graph(repo: Any) -> dict[bytes, tuple[bytes, ...]]:
    """Every object of the store (hex id) with the ids it points to."""
    from dulwich.objects import ShaFile
    from dulwich.pack import UnpackedObjectIterator

    store = repo.object_store
    edges: dict[bytes, tuple[bytes, ...]] = {}
    for pack in store.packs:
        at = {offset: sha for sha, offset, _ in pack.index.iterentries()}
        if len(edges) + len(at) > limits.MAX_SYNC_OBJECTS:
            raise InvalidArgumentError(f"over MAX_SYNC_OBJECTS ({limits.MAX_SYNC_OBJECTS}) objects")
        walker = UnpackedObjectIterator.for_pack_data(
            pack.data, resolve_ext_ref=pack.resolve_ext_ref
        )
        for unpacked in walker:
            sha = at[unpacked.offset].hex().encode()
            kind = unpacked.obj_type_num
            if kind in (_COMMIT, _TREE, _TAG) and unpacked.obj_chunks is not None:
                edges[sha] = _children(ShaFile.from_raw_chunks(kind, unpacked.obj_chunks))
            else:
                edges[sha] = ()
    for sha in store._iter_loose_objects():
        edges[sha] = _children(store[sha])
    return edges


def _children(obj: Any) -> tuple[bytes, ...]:
    """The ids a commit, tree or tag points to (none for a blob; submodules skipped)."""
    from dulwich.objects import Commit, Tag, Tree

    if isinstance(obj, Commit):
        return (obj.tree, *obj.parents)
    if isinstance(obj, Tree):
        return tuple(entry.sha for entry in obj.iteritems() if entry.mode != _GITLINK)
    if isinstance(obj, Tag):
        return (obj.object[1],)
    return ()


def push_local(
    repo: Any, url: str, token: str, signed: SignedRefs, cluster_id: str
) -> dict[str, str]:
    """Push the signed refs into the local forge at ``url`` under the remote namespace,
    atomically; the refs as written (``name -> sha``)."""
    from dulwich.errors import GitProtocolError, HangupException

    client, path = _client(url, token)
    prefix = namespace(cluster_id)
    target = {(prefix + name[len("refs/") :]).encode(): sha.encode() for name, sha in signed.refs}

    forge_refs: dict[bytes, bytes] = {}

    def update_refs(remote: dict[bytes, bytes]) -> dict[bytes, bytes]:
        forge_refs.update(remote)
        updates = {ref: sha for ref, sha in target.items() if remote.get(ref) != sha}
        for ref in remote:
            if ref.startswith(prefix.encode()) and ref not in target:
                updates[ref] = _ZERO
        return updates

    def pack_data(have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None) -> Any:
        reused = reusable_packs(repo, forge_refs, prefix)
        if reused is not None:
            return pack_records(reused, _loose(repo))
        return repo.generate_pack_data(set(have), set(want), progress=progress, ofs_delta=ofs_delta)

    try:
        result = client.send_pack(
            path.encode(), update_refs, generate_pack_data=pack_data, atomic=True
        )
    except (GitProtocolError, HangupException, OSError) as exc:
        raise UnavailableError(f"push into the local forge failed: {exc}") from None
    refused = {r.decode(): e for r, e in (result.ref_status or {}).items() if e}
    if refused:
        raise UnavailableError(f"the local forge refused the synced refs: {refused}")
    _record_pushed(repo, target)
    return {ref.decode(): sha.decode() for ref, sha in target.items()}


# -- pack reuse: send the fetched packs as they are, not re-packed object by object --------


def reusable_packs(repo: Any, forge_refs: dict[bytes, bytes], prefix: str) -> list[Any] | None:
    """The staging packs to send as they are, or ``None`` to re-pack (the slow, general
    path). When the local forge has nothing under the namespace yet: every pack. When its
    namespace refs are exactly those the last push wrote: the packs fetched since (each
    is self-contained, a thin pack being completed on receipt). Otherwise (the forge's
    refs were changed by hand, a pushed record is missing): ``None``."""
    packs = list(repo.object_store.packs)
    mine = {r: s for r, s in forge_refs.items() if r.startswith(prefix.encode())}
    if not mine:
        return _disjoint(packs)
    path = Path(repo.path) / _PUSHED
    try:
        pushed = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if {r.decode(): s.decode() for r, s in mine.items()} != pushed.get("refs"):
        return None
    sent = set(pushed.get("packs", []))
    return _disjoint([p for p in packs if _pack_name(p) not in sent])


def _disjoint(packs: list[Any]) -> list[Any] | None:
    """``packs`` if no object is in two of them (each can then be copied as it is)."""
    ids: set[bytes] = set()
    for pack in packs:
        before = len(ids)
        ids.update(entry[0] for entry in pack.index.iterentries())
        if len(ids) - before != len(pack.index):
            return None
    return packs


def _pack_name(pack: Any) -> str:
    name = pack.name()
    return name.decode() if isinstance(name, bytes) else str(name)


def _loose(repo: Any) -> list[Any]:
    store = repo.object_store
    return [store[sha] for sha in store._iter_loose_objects()]


def pack_records(packs: list[Any], loose: list[Any]) -> tuple[int, Iterator[Any]]:
    """``(count, records)`` for dulwich's pack writer: every object of ``packs`` as the
    bytes it is stored as (header, delta and compressed data copied, nothing decompressed:
    the packs are sent in their own order, so an offset delta still points at its base),
    then the ``loose`` objects. The packs must not share an object (see
    :func:`reusable_packs`)."""
    from dulwich.pack import UnpackedObject

    if loose:
        packed = {sha for pack in packs for sha, _, _ in pack.index.iterentries()}
        loose = [obj for obj in loose if obj.sha().digest() not in packed]

    def records() -> Iterator[Any]:
        for pack in packs:
            entries = sorted((offset, sha) for sha, offset, _ in pack.index.iterentries())
            path = Path(pack.data.path)
            end = path.stat().st_size - 20  # the trailer
            with path.open("rb") as f:
                for i, (offset, sha) in enumerate(entries):
                    stop = entries[i + 1][0] if i + 1 < len(entries) else end
                    f.seek(offset)
                    raw = f.read(stop - offset)
                    unpacked = UnpackedObject((raw[0] >> 4) & 7, sha=sha)
                    unpacked.comp_chunks = [raw]
                    yield unpacked
        for obj in loose:
            raw = obj.as_raw_chunks()
            yield UnpackedObject(obj.type_num, sha=obj.sha().digest(), decomp_chunks=raw)

    count = sum(len(pack.index) for pack in packs) + len(loose)
    return count, records()


def _record_pushed(repo: Any, target: dict[bytes, bytes]) -> None:
    """Remember what the forge now holds under the namespace and which packs sent it."""
    record = {
        "refs": {r.decode(): s.decode() for r, s in target.items()},
        "packs": sorted(_pack_name(p) for p in repo.object_store.packs),
    }
    path = Path(repo.path) / _PUSHED
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)
