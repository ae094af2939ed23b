from backend.errors import UsageError, friendly_error


def test_friendly_errors():
    assert "Out of memory" in friendly_error(MemoryError())
    assert "Out of memory" in friendly_error(RuntimeError("CUDA out of memory. Tried"))
    assert friendly_error(UsageError("bad")) == "bad"
