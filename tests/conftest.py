"""Shared fixtures: small random checkpoints in Huginn-0125's exact format, with a Huginn-style tokenizer."""
from __future__ import annotations

from pathlib import Path

import pytest

from model_builders import make_bundle_dir


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A random Huginn-format checkpoint + Huginn-style tokenizer (chat template, letter readout)."""
    return make_bundle_dir(tmp_path_factory.mktemp("tiny-huginn"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_dir):
    from backend.models import load_bundle

    return load_bundle(str(tiny_dir))
