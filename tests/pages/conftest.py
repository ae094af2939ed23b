from apptest_helpers import app, evil_benchmark  # noqa: F401  (fixtures)
