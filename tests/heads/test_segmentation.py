import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metatransformer.data2seq import Data2Seq, PointCloudTokenizer, TokenSequence
from metatransformer.data2seq.point import PointGroups
from metatransformer.heads import HEADS, IGNORE_INDEX, PointSegmentationHead, create_head


def _cloud_sequence(b=2, n=40, m=8, dim=16, channels=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(b, n, channels, generator=g, dtype=torch.float64)
    centres = points[:, torch.randperm(n, generator=g)[:m], :3]
    tokens = torch.randn(b, 1 + m, dim, generator=g, dtype=torch.float64)
    seq = TokenSequence.with_prefix(tokens, torch.ones(b, 1 + m, dtype=torch.bool), 1, "point_cloud",
                                    PointGroups(points, centres))
    return seq, points, centres, tokens


def test_logits_are_the_mlp_of_kdtree_interpolated_tokens_and_the_points():
    """Every step recomputed independently: LayerNorm + projection of the group tokens, scipy cKDTree 3-NN
    with 1/d² weights onto every point, the point's channels concatenated, the MLP."""
    from scipy.spatial import cKDTree

    seq, points, centres, tokens = _cloud_sequence()
    head = create_head("point_segmentation", dim=16, num_classes=5, in_chans=6, hidden_dim=12).double().eval()
    assert isinstance(head, PointSegmentationHead) and HEADS.canonical("point_seg") == "point_segmentation"
    with torch.no_grad():
        logits = head(seq)
        for b in range(2):
            projected = head.proj(F.layer_norm(tokens[b, 1:], (16,), head.norm.weight, head.norm.bias)).numpy()
            dist, index = cKDTree(centres[b].numpy()).query(points[b, :, :3].numpy(), k=3)
            weights = 1 / (dist ** 2 + 1e-8)
            weights /= weights.sum(1, keepdims=True)
            interpolated = torch.from_numpy((projected[index] * weights[..., None]).sum(1))
            expected = head.fc(head.mlp(torch.cat([interpolated, points[b]], dim=1)))
            torch.testing.assert_close(logits[b], expected)
    assert logits.shape == (2, 40, 5)


def test_loss_ignores_unlabelled_and_padded_points():
    head = PointSegmentationHead(dim=8, num_classes=3)
    logits = torch.randn(2, 4, 3, requires_grad=True)
    target = torch.tensor([[0, 2, IGNORE_INDEX, 1], [1, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    kept = target != IGNORE_INDEX
    torch.testing.assert_close(head.loss(logits, target), F.cross_entropy(logits[kept], target[kept]))
    mask = torch.tensor([[True, False, True, True], [True] * 4])
    torch.testing.assert_close(head.loss(logits, target, mask), F.cross_entropy(logits[kept & mask], target[kept & mask]))
    nothing = head.loss(logits, torch.full((2, 4), IGNORE_INDEX))
    nothing.backward()
    assert nothing.item() == 0.0 and logits.grad is not None and not logits.grad.any()
    with pytest.raises(ValueError, match="per-point targets"):
        head.loss(logits, target[:, :3])


def test_fused_sequences_segment_the_named_point_cloud():
    image = Data2Seq("image", dim=16, img_size=16, patch_size=8)(torch.rand(2, 3, 16, 16))
    cloud = PointCloudTokenizer(dim=16, num_points=32, num_groups=8, group_size=4).eval()
    with torch.no_grad():
        first, second = cloud(torch.randn(2, 32, 3)), cloud(torch.randn(2, 20, 3))
    head = PointSegmentationHead(dim=16, num_classes=3).eval()
    with torch.no_grad():
        alone = head(first.replace(modality="point_cloud"))
        fused = head(TokenSequence.concat([image.replace(modality="image"), first.replace(modality="point_cloud")]))
    torch.testing.assert_close(fused, alone)  # the image tokens take no part
    two = TokenSequence.concat([first.replace(modality="point_cloud"), second.replace(modality="scan")])
    with pytest.raises(ValueError, match="found 2"):
        head(two)
    head.modality = "scan"
    assert head(two).shape == (2, 20, 3)
    cached = TokenSequence(first.tokens, first.mask, first.prefix, modalities=("point_cloud",))
    with pytest.raises(ValueError, match="cached features"):
        head(cached)


def test_masked_centres_take_no_part():
    seq, points, centres, tokens = _cloud_sequence(b=1, m=8)
    head = PointSegmentationHead(dim=16, num_classes=4, in_chans=6).double().eval()
    masked = TokenSequence(seq.tokens.clone(), seq.mask.clone(), seq.prefix, seq.segment, seq.modalities, seq.context)
    masked.mask[0, 5:] = False
    masked.tokens[0, 5:] = 1e6  # padding tokens: any value
    fewer = TokenSequence.with_prefix(tokens[:, :5], torch.ones(1, 5, dtype=torch.bool), 1, "point_cloud",
                                      PointGroups(points, centres[:, :4]))
    with torch.no_grad():
        torch.testing.assert_close(head(masked), head(fewer))
