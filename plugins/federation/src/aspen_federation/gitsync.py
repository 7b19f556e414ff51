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

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aspen.errors import AspenError, CompareFailedError, InvalidArgumentError, UnavailableError
from aspen_federation import limits
from aspen_federation.signedrefs import SignedRefs

__all__ = ["RefsMoved", "check_complete", "fetch_verified", "namespace", "push_local"]

_ZERO = b"0" * 40
_GITLINK = 0o160000


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
            client.fetch(path, repo, determine_wants=determine_wants)
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


def check_complete(repo: Any, wanted: set[bytes]) -> int:
    """Every object reachable from ``wanted`` is in the store (``invalid_argument`` naming
    the first missing one); how many were checked."""
    from dulwich.objects import Commit, Tag, Tree

    store = repo.object_store
    seen: set[bytes] = set()
    stack = list(wanted)
    while stack:
        sha = stack.pop()
        if sha in seen:
            continue
        seen.add(sha)
        if len(seen) > limits.MAX_SYNC_OBJECTS:
            raise InvalidArgumentError(f"over MAX_SYNC_OBJECTS ({limits.MAX_SYNC_OBJECTS}) objects")
        try:
            obj = store[sha]
        except KeyError:
            raise InvalidArgumentError(
                f"object {sha.decode()} named by the signed refs is missing or does not "
                "match its id: sync refused"
            ) from None
        if isinstance(obj, Commit):
            stack.append(obj.tree)
            stack.extend(obj.parents)
        elif isinstance(obj, Tree):
            stack.extend(entry.sha for entry in obj.iteritems() if entry.mode != _GITLINK)
        elif isinstance(obj, Tag):
            stack.append(obj.object[1])
    return len(seen)


def push_local(
    repo: Any, url: str, token: str, signed: SignedRefs, cluster_id: str
) -> dict[str, str]:
    """Push the signed refs into the local forge at ``url`` under the remote namespace,
    atomically; the refs as written (``name -> sha``)."""
    from dulwich.errors import GitProtocolError, HangupException

    client, path = _client(url, token)
    prefix = namespace(cluster_id)
    target = {(prefix + name[len("refs/") :]).encode(): sha.encode() for name, sha in signed.refs}

    def update_refs(remote: dict[bytes, bytes]) -> dict[bytes, bytes]:
        updates = {ref: sha for ref, sha in target.items() if remote.get(ref) != sha}
        for ref in remote:
            if ref.startswith(prefix.encode()) and ref not in target:
                updates[ref] = _ZERO
        return updates

    def pack_data(have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None) -> Any:
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
    return {ref.decode(): sha.decode() for ref, sha in target.items()}
