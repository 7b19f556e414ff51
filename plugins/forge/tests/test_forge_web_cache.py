"""The web UI's byte-bounded LRU cache (highlighted files)."""

from __future__ import annotations

from aspen_forge.web.cache import ByteLRU


def test_cache_keeps_recent_values_within_its_bytes() -> None:
    cache = ByteLRU(max_bytes=100)
    for key in "abcd":
        cache.put(key, key * 25)  # 100 bytes: full
    assert cache.get("a") == "a" * 25  # now the most recently used
    cache.put("e", "é" * 12)  # 24 bytes in UTF-8: "b", the least recently used, goes
    assert cache.get("b") is None
    assert all(cache.get(key) is not None for key in "acde")


def test_cache_skips_values_over_a_quarter_of_its_bound() -> None:
    cache = ByteLRU(max_bytes=40)
    cache.put("small", "x" * 10)
    cache.put("big", "x" * 11)
    assert cache.get("big") is None and cache.get("small") == "x" * 10
