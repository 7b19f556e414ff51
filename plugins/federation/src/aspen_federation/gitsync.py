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
    check_complete(repo, wanted)
    # the staging refs: the next fetch offers them as haves (incremental)
    for ref in list(repo.refs.keys()):
        if ref.startswith(b"refs/") and ref.decode() not in dict(signed.refs):
            del repo.refs[ref]
    for name, sha in signed.refs:
        repo.refs[name.encode()] = sha.encode()
    return repo


def _fetch(client: Any, path: str, repo: Any, determine_wants: Any) -> None:
    """``client.fetch``, but into an empty store the pack (whole: there is nothing it
    could be thin against) is indexed once on receipt, not completed and then indexed."""
    if any(True for _ in repo.object_store):
        client.fetch(path, repo, determine_wants=determine_wants)
        return
    f, commit, abort = repo.object_store.add_pack()
    try:
        client.fetch_pack(path, determine_wants, repo.get_graph_walker(), f.write)
    except BaseException:
        abort()
        raise
    commit()


def check_complete(repo: Any, wanted: set[bytes]) -> int:
    """Every object reachable from ``wanted`` is in the store (``invalid_argument`` naming
    the first missing one); how many were checked. The graph is read in one sequential
    pass over each pack (each delta resolved once, from its base; blobs never parsed),
    not object by object."""
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
            if kind in (_COMMIT, _TREE, _TAG):
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
        return packs
    path = Path(repo.path) / _PUSHED
    try:
        pushed = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if {r.decode(): s.decode() for r, s in mine.items()} != pushed.get("refs"):
        return None
    sent = set(pushed.get("packs", []))
    return [p for p in packs if _pack_name(p) not in sent]


def _pack_name(pack: Any) -> str:
    name = pack.name()
    return name.decode() if isinstance(name, bytes) else str(name)


def _loose(repo: Any) -> list[Any]:
    store = repo.object_store
    return [store[sha] for sha in store._iter_loose_objects()]


def pack_records(packs: list[Any], loose: list[Any]) -> tuple[int, Iterator[Any]]:
    """``(count, records)`` for dulwich's pack writer: every object of ``packs`` with its
    compressed bytes reused as stored (no delta search, no recompression; an offset delta
    becomes a delta on its base's id, as its base's offset in the new pack differs), then
    the ``loose`` objects; each object once."""
    from dulwich.object_format import SHA1
    from dulwich.pack import DELTA_TYPES, OFS_DELTA, REF_DELTA, UnpackedObject, pack_object_header

    ids: set[bytes] = set()
    for pack in packs:
        ids.update(entry[0] for entry in pack.index.iterentries())
    loose = [obj for obj in loose if obj.sha().digest() not in ids]

    def records() -> Iterator[Any]:
        sent: set[bytes] = set()
        for pack in packs:
            at = {offset: sha for sha, offset, _ in pack.index.iterentries()}
            for unpacked in pack.data.iter_unpacked(include_comp=True):
                sha = at[unpacked.offset]
                if sha in sent:
                    continue
                sent.add(sha)
                unpacked._sha = sha
                kind = unpacked.pack_type_num
                if kind == OFS_DELTA:
                    unpacked.delta_base = at[unpacked.offset - unpacked.delta_base]
                    kind = unpacked.pack_type_num = REF_DELTA
                base = unpacked.delta_base if kind in DELTA_TYPES else None
                header = pack_object_header(kind, base, unpacked.decomp_len, SHA1)
                unpacked.comp_chunks = [bytes(header), *unpacked.comp_chunks]
                yield unpacked
        for obj in loose:
            raw = obj.as_raw_chunks()
            yield UnpackedObject(obj.type_num, sha=obj.sha().digest(), decomp_chunks=raw)

    return len(ids) + len(loose), records()


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
