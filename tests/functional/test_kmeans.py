import numpy as np
import pytest
import torch

from personakit.functional.kmeans import kmeans, kmeans_assign


def test_separated_blobs_are_recovered_and_seeded():
    gen = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(20, 2, generator=gen) for c in centers])
    a, b = kmeans(x, 3, seed=1), kmeans(x, 3, seed=1)
    assert torch.equal(a.labels, b.labels)
    truth = torch.arange(3).repeat_interleave(20)
    # each true blob maps to exactly one cluster
    for blob in range(3):
        assert a.labels[truth == blob].unique().numel() == 1
    assert a.labels.unique().numel() == 3
    assert torch.equal(kmeans_assign(x, a.centers), a.labels)


def test_inertia_matches_sklearn():
    sklearn = pytest.importorskip("sklearn.cluster")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    ours = kmeans(torch.from_numpy(x), 4, n_init=8, seed=0)
    ref = sklearn.KMeans(4, n_init=8, random_state=0).fit(x)
    # Lloyd finds local optima; the best of 8 restarts should be within 2% of sklearn's
    assert ours.inertia <= ref.inertia_ * 1.02
    recomputed = ((torch.from_numpy(x) - ours.centers[ours.labels]) ** 2).sum().item()
    assert ours.inertia == pytest.approx(recomputed, rel=1e-4)


def test_duplicates_and_bad_arguments():
    x = torch.ones(4, 3)
    result = kmeans(x, 3)
    assert result.labels.shape == (4,) and result.inertia == pytest.approx(0.0)
    with pytest.raises(ValueError, match="k=5"):
        kmeans(x, 5)
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        kmeans(torch.ones(3), 1)


def test_assign_in_blocks_equals_brute_force():
    """Nearest centres found block by block (chunk smaller than n) equal the full distance matrix's argmin."""
    g = torch.Generator().manual_seed(3)
    x, centers = torch.randn(37, 5, generator=g), torch.randn(6, 5, generator=g)
    brute = torch.cdist(x, centers).argmin(1)
    for chunk in (1, 4, 37, 100):
        assert torch.equal(kmeans_assign(x, centers, chunk=chunk), brute)
    result = kmeans(x, 4, n_init=2, seed=1, chunk=5)
    assert torch.equal(result.labels, torch.cdist(x, result.centers).argmin(1))
    assert result.inertia == pytest.approx(float(((x - result.centers[result.labels]) ** 2).sum()), rel=1e-5)
