"""Nearest-vertex search: the fast block search equals the brute force exactly (ties included), both agree with
an independent KD-tree (scipy, float64) and with the official code's recorded nearest vertices."""

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

import official_fixture
from neural.nearest import NearestVertices, VertexBlocks, nearest_naive


def _ray_samples(vertices: torch.Tensor, n_rays: int, samples: int, seed: int) -> torch.Tensor:
    """Points along random rays through the body's box, as the pose field samples them (most off the surface)."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = vertices.amin(0), vertices.amax(0)
    through = lo + (hi - lo) * torch.rand(n_rays, 3, generator=g)
    direction = torch.nn.functional.normalize(torch.randn(n_rays, 3, generator=g), dim=-1)
    t = torch.linspace(-0.6, 0.6, samples)
    return (through[:, None] + direction[:, None] * t[None, :, None]).reshape(-1, 3)


def _assert_same(fast, naive):
    assert torch.equal(fast[1], naive[1])
    assert torch.equal(fast[0], naive[0])


def test_fast_equals_naive_on_random_clouds():
    g = torch.Generator().manual_seed(0)
    for V, N in ((1, 50), (7, 200), (33, 500), (700, 3000)):
        vertices = torch.rand(V, 3, generator=g) * torch.tensor([0.6, 1.8, 0.3]) - 0.3
        points = torch.randn(N, 3, generator=g) * 0.8  # inside, around and far outside the cloud
        _assert_same(VertexBlocks.build(vertices).query(points, chunk=256), nearest_naive(points, vertices))


def test_exact_ties_go_to_the_smallest_index_in_both_searches():
    # Integer lattice with every vertex twice, queried at lattice and half-lattice points: many exact ties.
    g = torch.Generator().manual_seed(1)
    grid = torch.stack(torch.meshgrid(*[torch.arange(6.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    vertices = torch.cat([grid, grid])[torch.randperm(2 * len(grid), generator=g)]
    points = torch.randint(-2, 14, (4000, 3), generator=g).float() / 2
    fast, naive = VertexBlocks.build(vertices, block_size=8).query(points), nearest_naive(points, vertices)
    _assert_same(fast, naive)
    d2 = ((points[:, None] - vertices[None]) ** 2).sum(-1)
    tied = d2 == d2.min(1, keepdim=True).values
    first = tied.float().argmax(1)
    assert torch.equal(naive[1], first)
    assert (tied.sum(1) > 1).float().mean() > 0.5  # the test really exercises ties


def test_body_like_cloud_matches_kdtree():
    fixture = official_fixture.load()
    vertices = torch.from_numpy(fixture["in/vertices"][1])  # 6890 posed vertices, bent pose
    points = _ray_samples(vertices, 1500, 8, seed=2)
    d2, index = VertexBlocks.build(vertices).query(points)
    _assert_same((d2, index), nearest_naive(points, vertices))
    dist, ref = cKDTree(vertices.double().numpy()).query(points.double().numpy(), k=2)
    clear = dist[:, 1] - dist[:, 0] > 1e-5  # float32 rounding may only swap near-ties
    assert clear.mean() > 0.95
    assert np.array_equal(index.numpy()[clear], ref[clear, 0])
    np.testing.assert_allclose(d2.sqrt().numpy(), dist[:, 0], atol=1e-6)


def test_doubled_body_of_13718_vertices():
    fixture = official_fixture.load()
    body = torch.from_numpy(fixture["in/vertices"][0])
    vertices = torch.cat([body, body * 0.97 + 0.004])[:13718]
    points = _ray_samples(vertices, 400, 8, seed=3)
    naive = nearest_naive(points, vertices)
    _assert_same(VertexBlocks.build(vertices).query(points), naive)
    _assert_same(VertexBlocks.build(vertices).query(points, chunk=65536), naive)  # the GPU's one-chunk search


def test_rest_pose_partition_is_exact_however_poor():
    # One partition for the batch, from the rest pose (compact blocks) or from noise (blocks spanning the body):
    # only the speed may change, never a result.
    fixture = official_fixture.load()
    vertices = torch.from_numpy(fixture["in/vertices"])  # (2, 6890, 3) posed
    points = torch.stack([_ray_samples(v, 600, 8, seed=6) for v in vertices])
    naive = NearestVertices(vertices, brute_force=True)(points)
    noise = torch.rand(vertices.shape[1:], generator=torch.Generator().manual_seed(7))
    for rest in (torch.from_numpy(fixture["in/tpose_vertices"][0]), noise):
        _assert_same(NearestVertices(vertices, rest=rest)(points), naive)
    with pytest.raises(ValueError, match="rest must be the rest pose"):
        NearestVertices(vertices, rest=noise[:-1])


def test_official_nearest_vertices_reproduced():
    fixture = official_fixture.load()
    points = torch.from_numpy(fixture["mid/points"])
    vertices = torch.from_numpy(fixture["in/vertices"])
    for fast in (True, False):
        d2, index = NearestVertices(vertices, brute_force=not fast)(points)
        assert np.array_equal(index.numpy(), fixture["mid/nearest_vertex_idx"].astype(np.int64))
        np.testing.assert_allclose(d2.numpy(), fixture["mid/nearest_vertex_d2"], atol=1e-6)


def test_batched_search_and_errors():
    g = torch.Generator().manual_seed(4)
    vertices = torch.randn(2, 300, 3, generator=g)
    points = torch.randn(2, 1000, 3, generator=g)
    fast = NearestVertices(vertices, brute_force=False)(points)
    naive = NearestVertices(vertices, brute_force=True)(points)
    assert fast[0].shape == (2, 1000) and fast[1].dtype == torch.int64
    _assert_same(fast, naive)
    _assert_same((fast[0][1], fast[1][1]), nearest_naive(points[1], vertices[1]))
    with pytest.raises(ValueError, match=r"points must be \(B=2, N, 3\)"):
        NearestVertices(vertices)(points[:1])
    with pytest.raises(ValueError, match="vertices must be"):
        NearestVertices(vertices[0])
    bad = points.clone()
    bad[0, 5] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        NearestVertices(vertices)(bad)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_search_matches_cpu():
    fixture = official_fixture.load()
    vertices = torch.from_numpy(fixture["in/vertices"])
    points = torch.stack([_ray_samples(v, 1000, 8, seed=5) for v in vertices])
    d2, index = NearestVertices(vertices.cuda())(points.cuda())
    ref = NearestVertices(vertices)(points)
    assert torch.equal(index.cpu(), ref[1])
    torch.testing.assert_close(d2.cpu(), ref[0], rtol=0, atol=1e-6)
