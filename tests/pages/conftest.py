from apptest_helpers import app  # noqa: F401  (fixture)
