"""aspen.journal: the durable, revisioned event journal (docs/events.md).

Any plugin publishes events (``name``, ``subject``, ``payload``) into the replicated state,
in the same Raft entry and LMDB transaction as the KV change they report (a ``publish`` op
inside ``kv.txn``) or on their own (``node.events.publish``). Each event gets a *position*:
1, 2, 3… in the order applied, the same on every replica, never reused. Readers read a page
from a position (``events.read``) or follow new events (``events.watch``), filtered by a
``name:subject`` glob; a position older than the journal's retention is ``compacted``.

* :mod:`aspen.journal.match`: ``name:subject`` patterns;
* :mod:`aspen.journal.commands`: validation of published events and of read params;
* :mod:`aspen.journal.store`: the journal in LMDB (append, retention, reads);
* :mod:`aspen.journal.hub`: wakes watchers as events are applied;
* :mod:`aspen.journal.handlers`: the ``events.*`` RPC methods;
* :mod:`aspen.journal.api`: ``node.events``, what plugins call.
"""

from __future__ import annotations
