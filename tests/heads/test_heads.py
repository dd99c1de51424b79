import pytest
import torch
import torch.nn.functional as F

from metatransformer.data2seq import TokenSequence
from metatransformer.heads import ClassificationHead, MultiLabelHead, RegressionHead, TokenHead, create_head, pool_tokens


def _sequence(tokens, mask, num_prefix=1, modality="image"):
    return TokenSequence.with_prefix(tokens, mask, num_prefix, modality)


def test_pooling_respects_the_mask_and_the_cls_token():
    tokens = torch.tensor([[[9.0], [1.0], [3.0], [100.0]]])
    features = _sequence(tokens, torch.tensor([[True, True, True, False]]))
    assert pool_tokens(features, "cls").item() == 9.0
    assert pool_tokens(features, "mean").item() == 2.0  # cls and padding left out
    assert pool_tokens(features, "max").item() == 3.0
    assert pool_tokens(features, ("cls", "mean", "max")).tolist() == [[9.0, 2.0, 3.0]]
    no_cls = _sequence(tokens, torch.tensor([[True, True, True, False]]), num_prefix=0)
    assert pool_tokens(no_cls, "mean").item() == pytest.approx(13 / 3)
    with pytest.raises(ValueError, match="pool must be"):
        pool_tokens(features, "median")


def test_cls_pooling_without_a_cls_token_is_refused_not_a_patch_token():
    features = _sequence(torch.randn(2, 4, 8), torch.ones(2, 4, dtype=torch.bool), num_prefix=0)
    head = ClassificationHead(dim=8, num_classes=3, pool="cls")
    with pytest.raises(ValueError, match="cls pooling needs a cls token"):
        head(features)


def test_fused_pooling_never_takes_another_modalitys_cls_token():
    image = _sequence(torch.tensor([[[10.0], [1.0], [3.0]]]), torch.ones(1, 3, dtype=torch.bool), 1, "image")
    audio = _sequence(torch.tensor([[[-50.0], [5.0], [7.0], [99.0]]]), torch.tensor([[True, True, True, False]]),
                      1, "audio")
    joint = TokenSequence.concat([image, audio])
    assert pool_tokens(joint, "mean").item() == pytest.approx((1 + 3 + 5 + 7) / 4)  # no cls of either
    assert pool_tokens(joint, "max").item() == 7.0  # padding (99) and cls tokens left out
    assert pool_tokens(joint, "mean", modality="audio").item() == 6.0
    assert pool_tokens(joint, "cls", modality="audio").item() == -50.0
    assert pool_tokens(joint, "cls").item() == 10.0
    head = RegressionHead(dim=1, pool="mean", modality="image", norm=False)
    with torch.no_grad():
        head.fc.weight.fill_(1.0), head.fc.bias.zero_()
    assert head(joint).item() == 2.0


def test_classification_head_is_layernorm_then_linear():
    head = ClassificationHead(dim=8, num_classes=3, pool="cls")
    tokens = torch.randn(2, 5, 8)
    expected = head.fc(F.layer_norm(tokens[:, 0], (8,), head.norm.weight, head.norm.bias, eps=1e-5))
    logits = head(_sequence(tokens, torch.ones(2, 5, dtype=torch.bool)))
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(head.loss(logits, torch.tensor([0, 2])), F.cross_entropy(logits, torch.tensor([0, 2])))


def test_mlp_head_several_pools_and_reset():
    head = ClassificationHead(dim=8, num_classes=3, pool=("cls", "mean"), hidden_dim=16)
    assert head.pre_logits[0].in_features == 16
    features = _sequence(torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool))
    assert head(features).shape == (2, 3)
    head.reset(7)
    assert head.num_outputs == 7 and head(features).shape == (2, 7)


def test_multilabel_and_regression_losses():
    multi = MultiLabelHead(dim=8, num_classes=4)
    logits = torch.randn(2, 4)
    target = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1]])
    torch.testing.assert_close(multi.loss(logits, target), F.binary_cross_entropy_with_logits(logits, target.float()))
    reg = RegressionHead(dim=8, pool="mean")
    out = reg(_sequence(torch.randn(3, 4, 8), torch.ones(3, 4, dtype=torch.bool)))
    assert out.shape == (3, 1)
    torch.testing.assert_close(reg.loss(out, torch.zeros(3)), out.abs().mean())
    with pytest.raises(ValueError, match="loss_type"):
        RegressionHead(dim=8, loss_type="huber")


def test_token_head_scores_content_tokens_only():
    head = TokenHead(dim=8, num_classes=5)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    features = _sequence(torch.randn(2, 4, 8), mask)
    logits = head(features)
    assert logits.shape == (2, 4, 5)
    target = torch.tensor([[0, 1, 2, 3], [0, 4, 1, 1]])
    expected = F.cross_entropy(torch.stack([logits[0, 1], logits[0, 2], logits[1, 1]]), torch.tensor([1, 2, 4]))
    torch.testing.assert_close(head.loss(logits, target, head.scored_mask(features)), expected)


def test_create_head_checks_kind_options_types_and_ranges():
    head = create_head("Classification", dim=8, num_classes=2)
    assert isinstance(head, ClassificationHead) and head.kind == "classification"
    assert head.options["pool"] == "cls" and head.options["num_classes"] == 2
    with pytest.raises(ValueError, match="unknown head 'ranking'"):
        create_head("ranking", dim=8)
    with pytest.raises(TypeError, match="num_classes: expected an integer"):
        create_head("classification", dim=8, num_classes=2.0)
    with pytest.raises(ValueError, match="num_outputs: must be >= 1"):
        create_head("classification", dim=8, num_classes=0)
    with pytest.raises(TypeError, match="unknown option.*'num_outputs'"):
        create_head("classification", dim=8, num_classes=2, num_outputs=3)
