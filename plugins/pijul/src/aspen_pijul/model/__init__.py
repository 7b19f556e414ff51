"""The pure model of aspen-pijul: no I/O, no cluster.

* :mod:`.hashing` — BLAKE3 hashes in Pijul's base32 form, unique prefixes;
* :mod:`.change` — changes (hunks, canonical serialisation, verification);
* :mod:`.graph` — the graph of a channel: vertices, edges and their deleters, kept as sets so
  independent changes commute;
* :mod:`.output` — a file's text from the graph, with conflict markers;
* :mod:`.channel` — a channel: a change set, its application order, apply/unrecord;
* :mod:`.record` — a change from a working copy (diff against the output), and rollback.
"""
