"""Capability tokens: the capability algebra, Biscuit tokens, and their enforcement."""
