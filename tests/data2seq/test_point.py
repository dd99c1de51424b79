import numpy as np
import pytest
import torch

from metatransformer import create_encoder
from metatransformer.batching import Padded, pad_collate
from metatransformer.data2seq import Data2Seq, PointCloudTokenizer, TokenSequence, get_modality
from metatransformer.data2seq.point import PointGroups, farthest_point_sample, gather_points, group_points, knn
from metatransformer.geometry import interpolate_points


def brute_force_fps(points: np.ndarray, k: int, start: int = 0) -> list[int]:
    """Textbook FPS: the next pick maximises the distance to the nearest pick so far."""
    picks = [start]
    while len(picks) < k:
        d = np.array([min(((p - points[j]) ** 2).sum() for j in picks) for p in points])
        picks.append(int(np.argmax(d)))
    return picks


def test_fps_equals_brute_force():
    rng = np.random.default_rng(0)
    clouds = rng.normal(size=(3, 40, 3))
    for start in (0, 7):
        ours = farthest_point_sample(torch.from_numpy(clouds), 12, start=start)
        assert ours.shape == (3, 12) and ours.dtype == torch.long
        for cloud, row in zip(clouds, ours):
            assert row.tolist() == brute_force_fps(cloud, 12, start)


def test_fps_float32_equals_brute_force_and_picks_all_points_first():
    cloud = torch.randn(1, 30, 3)
    assert farthest_point_sample(cloud, 10)[0].tolist() == brute_force_fps(cloud[0].double().numpy(), 10)
    assert sorted(farthest_point_sample(cloud, 30)[0].tolist()) == list(range(30))


def test_fps_with_mask_never_picks_padding():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(25, 3))
    padded = torch.zeros(1, 40, 3, dtype=torch.float64)
    padded[0, :25] = torch.from_numpy(real)
    padded[0, 25:] = 100.0  # far away: an unmasked FPS would pick them second
    mask = torch.arange(40).unsqueeze(0) < 25
    assert farthest_point_sample(padded, 8, mask=mask)[0].tolist() == brute_force_fps(real, 8)


def test_knn_returns_the_nearest_points_in_order():
    rng = np.random.default_rng(2)
    points, query = rng.normal(size=(2, 64, 3)), rng.normal(size=(2, 9, 3))
    ours = knn(torch.from_numpy(query), torch.from_numpy(points), 5)
    assert ours.shape == (2, 9, 5)
    for b in range(2):
        dist = ((query[b, :, None] - points[b, None]) ** 2).sum(-1)  # m n
        np.testing.assert_array_equal(ours[b].numpy(), np.argsort(dist, axis=1, kind="stable")[:, :5])


def test_group_points_equals_fps_then_knn():
    points = torch.randn(2, 300, 3, dtype=torch.float64)
    centres, groups = group_points(points, 20, 8)
    assert torch.equal(centres, farthest_point_sample(points, 20))
    assert torch.equal(groups, knn(gather_points(points, centres), points, 8))
    mask = torch.arange(300) < torch.tensor([[150], [300]])
    centres, groups = group_points(points, 20, 8, mask=mask)
    assert torch.equal(centres, farthest_point_sample(points, 20, mask=mask))
    assert torch.equal(groups, knn(gather_points(points, centres), points, 8, mask=mask))
    assert groups[0].max() < 150


def test_knn_mask_excludes_padding():
    points = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0.1, 0, 0], [2, 0, 0]]])
    mask = torch.tensor([[True, True, False, True]])
    assert knn(points[:, :1], points, 3, mask=mask)[0, 0].tolist() == [0, 1, 3]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="k must be"):
        farthest_point_sample(torch.randn(1, 5, 3), 6)
    with pytest.raises(ValueError, match="start must be"):
        farthest_point_sample(torch.randn(1, 5, 3), 2, start=5)
    with pytest.raises(ValueError, match="k must be"):
        knn(torch.randn(1, 2, 3), torch.randn(1, 5, 3), 6)
    with pytest.raises(ValueError, match=r"\(batch, points, 3\)"):
        PointCloudTokenizer(dim=32)(torch.randn(1024, 3))
    with pytest.raises(ValueError, match="num_groups"):
        PointCloudTokenizer(dim=32, num_points=64, num_groups=128)


def test_reference_shape_1024_points_to_256_tokens_plus_cls():
    seq = Data2Seq("point_cloud", dim=64)(torch.randn(2, 1024, 3))
    assert seq.tokens.shape == (2, 257, 64) and seq.mask.all() and seq.prefix.tolist() == [True] + [False] * 256
    for alias in ("point", "points", "pointcloud", "Point-Cloud"):
        assert get_modality(alias).name == "point_cloud"


def test_tokens_are_the_mini_pointnet_of_brute_force_groups():
    """Each token = group_embed(neighbours relative to the FPS centre, + features) + pos_embed(centre)."""
    tokenizer = PointCloudTokenizer(dim=32, num_points=48, num_groups=6, group_size=5, in_chans=6,
                                    cls_token=False).eval()
    points = torch.randn(1, 48, 6, dtype=torch.float64)
    tokenizer.double()
    cloud = points[0].numpy()
    centres = brute_force_fps(cloud[:, :3], 6)
    expected = []
    for c in centres:
        dist = ((cloud[:, :3] - cloud[c, :3]) ** 2).sum(1)
        group = torch.from_numpy(cloud[np.argsort(dist, kind="stable")[:5]].copy())
        group[:, :3] -= torch.from_numpy(cloud[c, :3])
        expected.append(tokenizer.group_embed(group[None])[0] + tokenizer.pos_embed(points[0, c, :3]))
    with torch.no_grad():
        ours = tokenizer(points).tokens[0]
        torch.testing.assert_close(ours, torch.stack(expected))


def test_padded_clouds_mask_the_missing_centres():
    tokenizer = PointCloudTokenizer(dim=32, num_points=64, num_groups=16, group_size=4).eval()
    small, large = torch.randn(10, 3), torch.randn(64, 3)
    batch = pad_collate([small, large])
    assert isinstance(batch, Padded)
    with torch.no_grad():
        seq = tokenizer(batch)
        alone = tokenizer(large[None])
    assert seq.mask[0].sum() == 1 + 10 and seq.mask[1].all()
    torch.testing.assert_close(seq.tokens[1], alone.tokens[0])


def test_files_of_different_sizes_through_the_embedding_path(tmp_path):
    plyfile = pytest.importorskip("plyfile")
    paths = []
    for i, n in enumerate((1500, 700)):
        vertex = np.zeros(n, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
        xyz = np.random.default_rng(i).normal(size=(n, 3)) * (i + 1) + 5
        for j, axis in enumerate("xyz"):
            vertex[axis] = xyz[:, j]
        paths.append(tmp_path / f"cloud{i}.ply")
        plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")]).write(str(paths[-1]))
    spec = get_modality("point_cloud")
    tokenizer = Data2Seq("point_cloud", dim=64).eval()
    items = [spec.transform(tokenizer)(spec.reader(path)) for path in paths]
    for item in items:  # centred, unit sphere, resampled
        assert item.shape == (1024, 3)
        assert item.norm(dim=1).max() == pytest.approx(1.0, abs=1e-5)
    batch = spec.collate(items)
    with torch.no_grad():
        seq = tokenizer(batch)
        out = create_encoder("nano")(seq.tokens, seq.mask)
    assert out.shape == (2, 257, 64) and torch.isfinite(out).all()


def _kdtree_interpolation(values, points, query, k):
    """PointNet++ 3-NN interpolation computed independently: scipy's cKDTree neighbours, numpy weights."""
    from scipy.spatial import cKDTree

    dist, index = cKDTree(points).query(query, k=k)
    weights = 1.0 / (dist ** 2 + 1e-8)
    weights /= weights.sum(1, keepdims=True)
    return (values[index] * weights[..., None]).sum(1)


def test_interpolation_equals_a_kdtree_computation():
    rng = np.random.default_rng(6)
    points, query, values = rng.normal(size=(2, 20, 3)), rng.normal(size=(2, 70, 3)), rng.normal(size=(2, 20, 5))
    query[:, :3] = points[:, :3]  # query points on top of known points take their values
    ours = interpolate_points(*(torch.from_numpy(a) for a in (values, points, query)))
    for b in range(2):
        np.testing.assert_allclose(ours[b].numpy(), _kdtree_interpolation(values[b], points[b], query[b], 3),
                                   rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours[:, :3].numpy(), values[:, :3], atol=1e-6)
    mask = torch.arange(20) < torch.tensor([[12], [2]])  # padding never contributes; 2 real points: those 2
    masked = interpolate_points(*(torch.from_numpy(a).float() for a in (values, points, query)), mask=mask)
    for b, real in ((0, 12), (1, 2)):
        expected = _kdtree_interpolation(values[b, :real], points[b, :real], query[b], min(3, real))
        np.testing.assert_allclose(masked[b].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_tokenizer_records_its_points_and_centres():
    tokenizer = PointCloudTokenizer(dim=32, num_points=64, num_groups=16, group_size=4, in_chans=6).eval()
    points = torch.randn(2, 64, 6)
    with torch.no_grad():
        seq = tokenizer(points)
    (groups,) = seq.context
    assert isinstance(groups, PointGroups) and groups.points is points
    torch.testing.assert_close(groups.centres, gather_points(points[..., :3], farthest_point_sample(points[..., :3], 16)))
    joint = TokenSequence.concat([Data2Seq("image", dim=32, img_size=16, patch_size=8)(torch.rand(2, 3, 16, 16)),
                                  seq.replace(tokens=seq.tokens * 2)])
    assert joint.context == (None, groups)


def test_clouds_smaller_than_the_groups_are_padded_not_refused():
    tokenizer = PointCloudTokenizer(dim=32, num_points=64, num_groups=16, group_size=8).eval()
    small = torch.randn(2, 5, 3)
    with torch.no_grad():
        seq = tokenizer(small)
        padded = tokenizer(pad_collate([small[0], torch.randn(3, 3)]))
    assert seq.tokens.shape == (2, 17, 32) and seq.mask.sum(1).tolist() == [6, 6]
    assert seq.context[0].points is small  # the centres: every real point, then repeats of real points
    assert set(map(tuple, seq.context[0].centres[0].tolist())) == set(map(tuple, small[0].tolist()))
    assert padded.mask.sum(1).tolist() == [6, 4] and padded.context[0].points.shape == (2, 5, 3)
