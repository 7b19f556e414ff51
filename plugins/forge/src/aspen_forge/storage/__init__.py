"""Where git objects live: packs recorded in KV (small ones inline, large ones as blobs),
materialised on each node's disk as a dulwich object store (:mod:`.local`)."""
