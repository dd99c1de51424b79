import pytest
import torch
import torch.nn.functional as F

from metatransformer.heads import ClassificationHead, MultiLabelHead, RegressionHead, TokenHead, create_head, pool_tokens


def test_pooling_respects_the_mask_and_the_cls_token():
    tokens = torch.tensor([[[9.0], [1.0], [3.0], [100.0]]])
    mask = torch.tensor([[True, True, True, False]])
    assert pool_tokens(tokens, mask, "cls").item() == 9.0
    assert pool_tokens(tokens, mask, "mean").item() == 2.0  # cls and padding left out
    assert pool_tokens(tokens, mask, "max").item() == 3.0
    assert pool_tokens(tokens, mask, ("cls", "mean", "max")).tolist() == [[9.0, 2.0, 3.0]]
    assert pool_tokens(tokens, mask, "mean", num_prefix_tokens=0).item() == pytest.approx(13 / 3)
    with pytest.raises(ValueError, match="pool must be"):
        pool_tokens(tokens, mask, "median")


def test_classification_head_is_layernorm_then_linear():
    head = ClassificationHead(dim=8, num_classes=3, pool="cls")
    tokens = torch.randn(2, 5, 8)
    expected = head.fc(F.layer_norm(tokens[:, 0], (8,), head.norm.weight, head.norm.bias, eps=1e-5))
    torch.testing.assert_close(head(tokens, torch.ones(2, 5, dtype=torch.bool)), expected)
    logits = head(tokens, torch.ones(2, 5, dtype=torch.bool))
    torch.testing.assert_close(head.loss(logits, torch.tensor([0, 2])), F.cross_entropy(logits, torch.tensor([0, 2])))


def test_mlp_head_several_pools_and_reset():
    head = ClassificationHead(dim=8, num_classes=3, pool=("cls", "mean"), hidden_dim=16)
    assert head.pre_logits[0].in_features == 16
    assert head(torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)).shape == (2, 3)
    head.reset(7)
    assert head.num_outputs == 7 and head(torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)).shape == (2, 7)


def test_multilabel_and_regression_losses():
    multi = MultiLabelHead(dim=8, num_classes=4)
    logits = torch.randn(2, 4)
    target = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1]])
    torch.testing.assert_close(multi.loss(logits, target), F.binary_cross_entropy_with_logits(logits, target.float()))
    reg = RegressionHead(dim=8, pool="mean")
    out = reg(torch.randn(3, 4, 8), torch.ones(3, 4, dtype=torch.bool))
    assert out.shape == (3, 1)
    torch.testing.assert_close(reg.loss(out, torch.zeros(3)), out.abs().mean())
    with pytest.raises(ValueError, match="loss_type"):
        RegressionHead(dim=8, loss_type="huber")


def test_token_head_ignores_padding_and_cls():
    head = TokenHead(dim=8, num_classes=5)
    tokens = torch.randn(2, 4, 8)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    logits = head(tokens, mask)
    assert logits.shape == (2, 4, 5)
    target = torch.tensor([[0, 1, 2, 3], [0, 4, 1, 1]])
    expected = F.cross_entropy(torch.stack([logits[0, 1], logits[0, 2], logits[1, 1]]), torch.tensor([1, 2, 4]))
    torch.testing.assert_close(head.loss(logits, target, mask), expected)


def test_create_head_errors():
    assert isinstance(create_head("classification", dim=8, num_classes=2), ClassificationHead)
    with pytest.raises(ValueError, match="unknown head kind 'ranking'"):
        create_head("ranking", dim=8)
