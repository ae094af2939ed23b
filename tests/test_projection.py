import numpy as np
import pytest

from backend import projection
from backend.errors import UsageError


def test_pca_paths_one_basis_deterministic():
    rng = np.random.default_rng(0)
    paths = [rng.normal(size=(30, 16)).astype(np.float16), rng.normal(size=(20, 16))]
    xy, ratio = projection.pca_paths(paths)
    assert [a.shape for a in xy] == [(30, 2), (20, 2)]
    assert 0 < ratio.sum() <= 1
    xy2, _ = projection.pca_paths(paths)
    np.testing.assert_allclose(xy[0], xy2[0])


def test_pca_rejects_bad_input():
    with pytest.raises(UsageError):
        projection.pca_paths([])
    with pytest.raises(UsageError):
        projection.pca_paths([np.zeros((3, 4)), np.zeros((3, 5))])


def test_umap_paths_and_warmup_status():
    status = projection.start_umap_warmup()
    assert status in ("warming up", "ready", "failed")
    assert projection.wait_for_umap(timeout=300)
    rng = np.random.default_rng(0)
    xy = projection.umap_paths([rng.normal(size=(20, 8)), rng.normal(size=(15, 8))])
    assert [a.shape for a in xy] == [(20, 2), (15, 2)]
    assert projection.umap_status()["status"] == "ready"
