"""The web UI's byte-bounded LRU cache (highlighted files)."""

from __future__ import annotations

from aspen_forge.web.cache import ByteLRU


def test_cache_keeps_recent_values_within_its_bytes() -> None:
    cache = ByteLRU(max_bytes=40)
    cache.put("a", "a" * 10)
    cache.put("b", "b" * 10)
    cache.put("c", "c" * 10)
    assert cache.get("a") == "a" * 10  # now the most recently used
    cache.put("d", "é" * 6)  # 12 bytes in UTF-8: 42 in all, "b" (least recent) goes
    assert cache.get("b") is None
    assert [cache.get(k) is not None for k in "acd"] == [True, True, True]


def test_cache_skips_values_over_a_quarter_of_its_bound() -> None:
    cache = ByteLRU(max_bytes=40)
    cache.put("small", "x" * 10)
    cache.put("big", "x" * 11)
    assert cache.get("big") is None and cache.get("small") == "x" * 10
