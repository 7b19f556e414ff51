"""aspen.raft."""
