"""Every bound of aspen-forge, as a named constant (bytes where it bounds data)."""

from __future__ import annotations

#: Largest pack one push may send (bytes read from the wire, thin-pack bases not counted).
#: A push over it is refused with ``unpack`` failing and every ref ``ng``; raise it here.
MAX_PUSH_BYTES = 512 * 1024 * 1024
#: Bytes of HTTP body the listener takes on top of MAX_PUSH_BYTES (the ref commands and
#: pkt-line framing), so that the pack bound, not the listener, answers an oversized push.
PUSH_BODY_SLACK_BYTES = 4 * 1024 * 1024
#: Largest (decompressed) upload-pack request body: wants, haves, shallow lines.
MAX_UPLOAD_REQUEST_BYTES = 64 * 1024 * 1024
#: Bytes of response the git handler thread gathers before handing them to the listener.
RESPONSE_CHUNK_BYTES = 256 * 1024
#: A pack up to this size is stored inline in its KV record (one Raft entry with the refs);
#: larger ones go to the blob store.
INLINE_PACK_BYTES = 256 * 1024
#: A pack index up to this size is stored inline in the pack's KV record, else as a blob.
INLINE_INDEX_BYTES = 512 * 1024
#: Most refs one repository may hold (each a KV key; read on every clone and push).
MAX_REFS = 10_000
#: Most ref updates one push may carry.
MAX_REF_UPDATES = 500
#: Most packs one repository's object store may hold (each is looked up per object).
MAX_PACKS = 2_000
#: Longest owner or repository name, in characters (ASCII only).
MAX_NAME_CHARS = 100
#: Longest repository description, in bytes (UTF-8).
MAX_DESCRIPTION_BYTES = 4096
#: Longest ref name, in bytes.
MAX_REF_BYTES = 512
#: Most repositories one ``forge.repo_list`` answer carries.
MAX_LIST_REPOS = 1000
#: Most branch protection rules per repository.
MAX_PROTECTION_RULES = 100
#: Most names on one rule's push allow-list.
MAX_PUSH_ALLOW = 100
#: Git requests (upload-pack / receive-pack) one node serves at once in worker threads;
#: more wait their turn.
MAX_CONCURRENT_GIT_REQUESTS = 16
#: Connections to the leader one node keeps for forwarding writes.
MAX_FORWARD_CLIENTS = 4
#: Compare-and-swap attempts of a metadata change (repo create/rename…) before giving up.
MAX_CAS_ATTEMPTS = 20
#: Commits one force-push check walks back from the new tip looking for the old one
#: before calling the update a force push.
MAX_ANCESTRY_WALK = 1_000_000
#: Most refs a fork copies (all in the one transaction that creates it, under MAX_TXN_OPS).
MAX_FORK_REFS = 900
#: Commits whose parents one node keeps in memory for fetch negotiation (about 200 bytes
#: each: 200,000 commits is about 40 MiB); over it the cache is cleared and refilled.
MAX_PARENT_CACHE_COMMITS = 200_000
#: A fetch sending fewer objects than this sends them whole (no delta search: dulwich's
#: scans every object of every pack); more reuse the deltas stored in the packs.
REUSE_DELTAS_MIN_OBJECTS = 2_000

# ---------------------------------------------------------------- issues, patches, statuses
#: Longest issue or patch title, in bytes (UTF-8).
MAX_TITLE_BYTES = 1024
#: Longest issue/patch body, comment or review body, in bytes (UTF-8).
MAX_BODY_BYTES = 64 * 1024
#: Largest one op may be, encoded (a review with its line comments, a comment): one KV value.
MAX_OP_BYTES = 256 * 1024
#: Most ops one issue or patch may carry (each a KV key, all read to fold its state).
MAX_OPS_PER_OBJECT = 2_000
#: Most bytes of ops (encoded) one issue or patch may carry: the fold reads them all.
MAX_OBJECT_BYTES = 8 * 1024 * 1024
#: Most labels (and most assignees) one issue may carry.
MAX_LABELS = 50
#: Longest label or assignee name, in bytes.
MAX_LABEL_BYTES = 64
#: Most line comments one review may carry.
MAX_LINE_COMMENTS = 200
#: Longest path a line comment names, in bytes.
MAX_PATH_BYTES = 4096
#: Most issues or patches one list answer carries.
MAX_LIST_OBJECTS = 1000
#: Most patches one push or server merge updates in its transaction (a revision or
#: ``merged`` each: 3 txn ops and 1 compare apiece, under the core's MAX_TXN_OPS); patches
#: past it (by number) are left as they are, and a warning is logged.
MAX_PATCH_UPDATES_PER_PUSH = 100
#: Longest commit status context ("ci/build"), in bytes.
MAX_STATUS_CONTEXT_BYTES = 255
#: Longest commit status description or target URL, in bytes.
MAX_STATUS_TEXT_BYTES = 1024
#: Most status contexts one commit may carry.
MAX_STATUSES_PER_COMMIT = 100
#: Most conflicting paths one mergeability answer names (the count is always given).
MAX_CONFLICT_PATHS = 100


# --- web UI (aspen_forge.web) ---
#: Web page reads (object reads, highlighting, rendering) one node runs at once in worker
#: threads; more wait their turn (git requests have their own MAX_CONCURRENT_GIT_REQUESTS).
MAX_CONCURRENT_WEB_READS = 8
#: Largest file the web UI shows (highlighted) in a page; larger ones get a notice and a
#: raw link.
MAX_WEB_FILE_BYTES = 512 * 1024
#: Largest file the raw view sends (a whole blob is read into memory to send it).
MAX_WEB_RAW_BYTES = 16 * 1024 * 1024
#: Largest README rendered on a repository's home page; larger ones get a notice.
MAX_WEB_README_BYTES = 256 * 1024
#: Most entries one tree page lists (the rest are counted in a notice).
MAX_WEB_TREE_ENTRIES = 2_000
#: Commits per page of the commit log.
WEB_LOG_PAGE_COMMITS = 50
#: Deepest a log page may start (commits walked to reach it, about 0.15 ms each); a
#: deeper page is refused (clone instead).
MAX_WEB_LOG_DEPTH = 10_000
#: Bytes of unified diff one commit page shows (the rest is cut with a notice).
MAX_WEB_DIFF_BYTES = 1024 * 1024
#: Most changed files one commit page shows a diff for.
MAX_WEB_DIFF_FILES = 300
#: Most branches or tags one refs page lists (each costs an object read).
MAX_WEB_REFS_LISTED = 500
#: Largest login form body (a token and nothing else).
MAX_WEB_FORM_BYTES = 8 * 1024
#: Largest issue or patch form body (a comment, a review): MAX_BODY_BYTES of text
#: percent-encoded (up to 3 bytes each) plus the other fields.
MAX_WEB_POST_BYTES = 3 * MAX_BODY_BYTES + 4 * 1024
#: Issues or patches per page of their lists.
WEB_OBJECTS_PAGE = 50
#: Bytes of the per-browser CSRF token (a random value in an HttpOnly, SameSite=Strict
#: cookie, echoed by every form in a hidden field).
WEB_CSRF_BYTES = 16
#: Bytes of highlighted file HTML one node keeps (keyed by blob id and file name: a blob
#: never changes, so a popular file is highlighted once); least recently used goes first.
MAX_WEB_HIGHLIGHT_CACHE_BYTES = 32 * 1024 * 1024
