"""pages/common.py helpers that need no running app."""
from pages.common import RunStore


def test_run_store_is_a_bounded_lru():
    s = RunStore(maxsize=2)
    s.put("a", 1), s.put("b", 2), s.get("a"), s.put("c", 3)
    assert s.get("b") is None and s.get("a") == 1 and len(s) == 2
