import copy

import pytest
import timm
import torch
import torch.nn as nn
from safetensors.torch import load_file

from metatransformer.encoders import create_encoder
from metatransformer.pathway import (
    PathwayLinear,
    PathwayPairingError,
    check_merge,
    export_merged,
    merge_pathway,
    merged_state_dict,
    pathway_layers,
    pathway_param_groups,
    reparameterize_aux_into_target_model,
)


def _vit(depth=2, dim=64, heads=4, seed=0):
    torch.manual_seed(seed)
    return timm.create_model("vit_small_patch16_224", pretrained=False, img_size=32, depth=depth,
                             embed_dim=dim, num_heads=heads, num_classes=3).eval()


def _randomize_scales(model, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in pathway_layers(model).values():
            for scale in layer.scales:
                scale.copy_(torch.randn(scale.shape, generator=generator) * 0.3)


def test_original_entry_point_on_timm_vits_zero_scale_is_identity():
    target, aux = _vit(seed=0), _vit(seed=1)
    images = torch.randn(2, 3, 32, 32)
    expected = target(images)
    report = reparameterize_aux_into_target_model(target, aux, layer_names=("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"))
    assert report.layers == 8 and report.block_pairs == [[(0, 0), (1, 1)]]
    assert "8 layers" in str(report)
    assert torch.equal(target(images), expected)


def test_aux_weights_are_copies_on_the_targets_side():
    target, aux = _vit(seed=0), _vit(seed=1)
    reparameterize_aux_into_target_model(target, aux)
    layer = target.blocks[0].attn.qkv
    assert isinstance(layer, PathwayLinear)
    assert torch.equal(layer.aux_weights[0], aux.blocks[0].attn.qkv.weight)
    assert layer.aux_weights[0].data_ptr() != aux.blocks[0].attn.qkv.weight.data_ptr()


def test_train_then_merge_equals_unmerged_and_loads_strictly_into_a_plain_timm_vit(tmp_path):
    target, aux = _vit(seed=0), _vit(seed=1)
    reparameterize_aux_into_target_model(target, aux)
    _randomize_scales(target)
    optimizer = torch.optim.AdamW(pathway_param_groups(target, weight_decay=0.05, aux_weight_decay=0.0), lr=1e-3)
    target.train()
    for _ in range(3):
        loss = nn.functional.cross_entropy(target(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    target.eval()
    images = torch.randn(2, 3, 32, 32)
    assert check_merge(target, images, atol=1e-5) <= 1e-5

    path = export_merged(target, tmp_path / "merged.safetensors")
    plain = _vit(seed=5)
    plain.load_state_dict(load_file(path), strict=True)
    with torch.no_grad():
        unmerged = target(images)
        assert (plain(images) - unmerged).abs().max() <= 1e-5
        assert merge_pathway(target) == 8
        assert not pathway_layers(target)
        assert (target(images) - unmerged).abs().max() <= 1e-5
    assert set(target.state_dict()) == set(plain.state_dict())


def test_merged_export_of_our_encoder_loads_strictly(tmp_path):
    target, aux = create_encoder("nano"), create_encoder("nano")
    reparameterize_aux_into_target_model(target, [aux, create_encoder("nano")], scale_granularity="qkv")
    _randomize_scales(target)
    tokens = torch.randn(2, 7, 64)
    out_dir = export_merged(target, tmp_path / "encoder")
    reloaded = create_encoder(checkpoint=out_dir).eval()
    with torch.no_grad():
        assert (reloaded(tokens) - target.eval()(tokens)).abs().max() <= 1e-5
    assert set(merged_state_dict(target)) == set(create_encoder("nano").state_dict())


def test_several_auxiliaries_sum_their_terms():
    target, aux1, aux2 = create_encoder("nano"), create_encoder("nano"), create_encoder("nano")
    w = target.blocks[0].mlp.fc1.weight.detach().clone()
    reparameterize_aux_into_target_model(target, [aux1, aux2])
    layer = target.blocks[0].mlp.fc1
    with torch.no_grad():
        layer.scales[0].fill_(0.2)
        layer.scales[1].fill_(-0.7)
    expected = w + 0.2 * aux1.blocks[0].mlp.fc1.weight - 0.7 * aux2.blocks[0].mlp.fc1.weight
    torch.testing.assert_close(layer.weight, expected)


def test_meta_transformer_sequential_and_bias_free_layers():
    from timm.models.vision_transformer import Block
    target = nn.Sequential(*[Block(64, 4, qkv_bias=False) for _ in range(2)])
    aux = nn.Sequential(*[Block(64, 4, qkv_bias=False) for _ in range(2)])
    reparameterize_aux_into_target_model(target, aux)
    assert target[0].attn.qkv.bias is None
    _randomize_scales(target)
    x = torch.randn(2, 5, 64, requires_grad=True)
    target(x).sum().backward()
    assert x.grad is not None and target[0].attn.qkv.scales[0].grad is not None
    assert check_merge(target, x.detach()) <= 1e-5


def test_depth_mismatch_raises_unless_mapped():
    with pytest.raises(PathwayPairingError, match="2 blocks and the auxiliary 4.*stretch"):
        reparameterize_aux_into_target_model(_vit(depth=2), _vit(depth=4))
    report = reparameterize_aux_into_target_model(_vit(depth=2), _vit(depth=4), block_map="stretch")
    assert report.block_pairs == [[(0, 0), (1, 2)]]
    report = reparameterize_aux_into_target_model(_vit(depth=2), _vit(depth=4), block_map={0: 3})
    assert report.block_pairs == [[(0, 3)]] and report.layers == 4
    with pytest.raises(PathwayPairingError, match="out of range"):
        reparameterize_aux_into_target_model(_vit(depth=2), _vit(depth=4), block_map={0: 7})


def test_width_and_head_count_mismatches_raise():
    with pytest.raises(PathwayPairingError, match=r"\(192, 64\).*\(288, 96\)"):
        reparameterize_aux_into_target_model(_vit(dim=64), _vit(dim=96, heads=4))
    with pytest.raises(PathwayPairingError, match="head counts differ.*4.*8"):
        reparameterize_aux_into_target_model(_vit(dim=64, heads=4), _vit(dim=64, heads=8))


def test_twice_or_missing_layers_raise():
    target = _vit()
    reparameterize_aux_into_target_model(target, _vit(seed=1))
    with pytest.raises(PathwayPairingError, match="already re-parameterized"):
        reparameterize_aux_into_target_model(target, _vit(seed=2), layer_names=("mlp.fc1",))
    with pytest.raises(PathwayPairingError, match="exactly one stack"):
        reparameterize_aux_into_target_model(_vit(), _vit(), layer_names=("attn.nope",))


def test_separate_qkv_projections_map_into_a_fused_qkv():
    class BertLikeLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.key, self.value = nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 64)

    aux = nn.Module()
    aux.layer = nn.ModuleList([BertLikeLayer() for _ in range(2)])
    target = create_encoder("nano")
    reparameterize_aux_into_target_model(target, aux, layer_names={"attn.qkv": ("query", "key", "value")})
    fused = target.blocks[1].attn.qkv.aux_weights[0]
    for rows, name in zip((slice(0, 64), slice(64, 128), slice(128, 192)), ("query", "key", "value")):
        torch.testing.assert_close(fused[rows], getattr(aux.layer[1], name).weight)


def test_controls_random_and_shuffled():
    target, aux = _vit(depth=4, seed=0), _vit(depth=4, seed=1)
    reparameterize_aux_into_target_model(target, aux, control="random", seed=3)
    random_aux = target.blocks[2].mlp.fc2.aux_weights[0]
    reference = aux.blocks[2].mlp.fc2.weight
    assert random_aux.shape == reference.shape
    assert abs(random_aux.std() / reference.std() - 1) < 0.05
    assert not torch.allclose(random_aux, reference)

    target = _vit(depth=4, seed=0)
    report = reparameterize_aux_into_target_model(target, aux, control="shuffled", seed=3)
    pairs = report.block_pairs[0]
    assert sorted(a for _, a in pairs) == [0, 1, 2, 3] and pairs != [(i, i) for i in range(4)]
    for t, a in pairs:
        assert torch.equal(target.blocks[t].attn.proj.aux_weights[0], aux.blocks[a].attn.proj.weight)

    target = _vit(depth=4, seed=0)
    reparameterize_aux_into_target_model(target, None, control="random")
    assert target.blocks[0].attn.qkv.aux_weights[0].shape == (192, 64)
    with pytest.raises(PathwayPairingError, match="control='random'"):
        reparameterize_aux_into_target_model(_vit(), None)


def test_fixed_scale_and_granularities():
    target = create_encoder("nano")
    reparameterize_aux_into_target_model(target, create_encoder("nano"), scale_granularity="channel",
                                         scale_init=0.1, learnable_scale=False)
    layer = target.blocks[0].mlp.fc1
    assert layer.scales[0].shape == (256,) and not layer.scales[0].requires_grad
    assert torch.all(layer.scales[0] == 0.1)

    # "qkv": three λ for a fused qkv (one per q/k/v slice), one for every other layer.
    target, aux = create_encoder("nano"), create_encoder("nano")
    reparameterize_aux_into_target_model(target, aux, scale_granularity="qkv")
    qkv = target.blocks[0].attn.qkv
    assert qkv.scales[0].shape == (3,) and target.blocks[0].mlp.fc1.scales[0].shape == (1,)
    with torch.no_grad():
        qkv.scales[0].copy_(torch.tensor([0.0, 0.5, 0.0]))
    term = qkv.merged_weight() - qkv.target_weight
    torch.testing.assert_close(term[64:128], 0.5 * aux.blocks[0].attn.qkv.weight[64:128])
    assert term[:64].abs().max() == 0 and term[128:].abs().max() == 0


def test_param_groups_put_scales_in_the_optimizer_without_decay():
    target = create_encoder("nano")
    target.freeze()
    reparameterize_aux_into_target_model(target, create_encoder("nano"), trainable_aux=False)
    groups = {g["name"]: g for g in pathway_param_groups(target, weight_decay=0.05, aux_weight_decay=0.01)}
    assert set(groups) == {"pathway_scale"}  # frozen encoder, frozen aux: only λ trains
    assert groups["pathway_scale"]["weight_decay"] == 0.0
    assert len(groups["pathway_scale"]["params"]) == 8

    target = create_encoder("nano")
    reparameterize_aux_into_target_model(target, create_encoder("nano"))
    groups = {g["name"]: g for g in pathway_param_groups(target, weight_decay=0.05, aux_weight_decay=0.01)}
    assert groups["pathway_aux"]["weight_decay"] == 0.01 and len(groups["pathway_aux"]["params"]) == 8
    assert groups["decay"]["weight_decay"] == 0.05
    all_trainable = {id(p) for p in target.parameters() if p.requires_grad}
    assert all_trainable == {id(p) for g in groups.values() for p in g["params"]}
    optimizer = torch.optim.AdamW(list(groups.values()), lr=1e-3)
    scale = target.blocks[0].attn.qkv.scales[0]
    assert any(scale is p for g in optimizer.param_groups for p in g["params"])


def test_frozen_aux_in_bf16_storage_reports_memory():
    target = create_encoder("nano")
    report = reparameterize_aux_into_target_model(target, create_encoder("nano"), trainable_aux=False,
                                                  aux_dtype=torch.bfloat16)
    weights = sum(m.target_weight.numel() for m in pathway_layers(target).values())
    assert report.aux_parameters == weights
    assert report.memory_bytes_added == weights * 2 + report.scale_parameters * 4
    assert report.trainable_parameters_added == report.scale_parameters == 8


def test_deepcopy_and_state_dict_round_trip_of_an_unmerged_model():
    target = create_encoder("nano")
    reparameterize_aux_into_target_model(target, create_encoder("nano"))
    _randomize_scales(target)
    clone = create_encoder("nano")
    reparameterize_aux_into_target_model(clone, create_encoder("nano"))
    clone.load_state_dict(copy.deepcopy(target.state_dict()), strict=True)
    x = torch.randn(1, 4, 64)
    with torch.no_grad():
        assert torch.equal(clone.eval()(x), target.eval()(x))


@pytest.mark.slow
def test_torch_compile_trains_an_unmerged_pathway_model():
    target = create_encoder("nano")
    reparameterize_aux_into_target_model(target, create_encoder("nano"))
    _randomize_scales(target)
    x = torch.randn(2, 6, 64)
    eager_out = target(x)
    eager_out.square().mean().backward()
    eager_grad = target.blocks[0].attn.qkv.scales[0].grad.clone()
    target.zero_grad()
    compiled = torch.compile(target)
    compiled_out = compiled(x)
    compiled_out.square().mean().backward()
    torch.testing.assert_close(compiled_out, eager_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(target.blocks[0].attn.qkv.scales[0].grad, eager_grad, atol=1e-5, rtol=1e-4)


def test_check_merge_raises_when_merging_would_change_the_outputs():
    target = create_encoder("nano").eval()
    reparameterize_aux_into_target_model(target, create_encoder("nano"))
    with torch.no_grad():
        target.blocks[0].mlp.fc1.scales[0].fill_(0.5)
    x = torch.randn(2, 5, 64)
    assert check_merge(target, x) <= 1e-5
    # A merge that drops a λ term (the bug check_merge exists to catch) must be reported.
    from metatransformer.pathway import layer as layer_module
    original = layer_module.PathwayLinear.merged_weight

    def dropped_term(self):
        return self.target_weight.float()

    layer_module.PathwayLinear.merged_weight = dropped_term
    try:
        with pytest.raises(AssertionError, match="merged and un-merged outputs differ"):
            check_merge(target, x)
    finally:
        layer_module.PathwayLinear.merged_weight = original


def test_export_merged_of_a_model_writes_a_directory_the_model_loads(tmp_path):
    from metatransformer import MetaTransformer, create_model

    model = create_model("nano", modalities={"image": {"img_size": 32, "patch_size": 8}},
                         heads={"cls": {"kind": "classification", "num_classes": 2}}).eval()
    reparameterize_aux_into_target_model(model, create_encoder("nano"))
    with torch.no_grad():
        model.encoder.blocks[1].attn.proj.scales[0].fill_(0.3)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model("image", images, head="cls")
    export_merged(model, tmp_path / "merged")
    loaded = MetaTransformer.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded("image", images, head="cls"), expected, atol=1e-5, rtol=1e-5)


def test_an_unmerged_pathway_model_saves_reloads_resumes_and_merges(tmp_path):
    from metatransformer import MetaTransformer, create_model

    model = create_model("nano", modalities={"image": {"img_size": 32, "patch_size": 8}},
                         heads={"cls": {"kind": "classification", "num_classes": 2}})
    reparameterize_aux_into_target_model(model, create_encoder("nano"), scale_granularity="qkv",
                                         trainable_aux=False, aux_dtype=torch.bfloat16)
    pathway = model.encoder.config.pathway
    assert (0, "attn.qkv", 1) in pathway.layers and len(pathway.layers) == 8 and pathway.aux_dtype == "bfloat16"
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    optimizer = torch.optim.AdamW(pathway_param_groups(model, weight_decay=0.05, aux_weight_decay=0.0), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        model.heads["cls"].loss(model("image", images, head="cls"), labels).backward()
        optimizer.step()
    assert model.encoder.blocks[0].attn.qkv.scales[0].abs().sum() > 0
    model.eval()
    with torch.no_grad():
        expected = model("image", images, head="cls")
    model.save_pretrained(tmp_path / "run")

    loaded = MetaTransformer.from_pretrained(tmp_path / "run").eval()
    qkv = loaded.encoder.blocks[0].attn.qkv
    assert isinstance(qkv, PathwayLinear) and qkv.scales[0].shape == (3,)
    assert qkv.aux_weights[0].dtype == torch.bfloat16 and not qkv.aux_weights[0].requires_grad
    assert qkv.scales[0].requires_grad and not qkv.target_weight.requires_grad  # frozen target, λ trains
    torch.testing.assert_close(qkv.scales[0], model.encoder.blocks[0].attn.qkv.scales[0])
    with torch.no_grad():
        torch.testing.assert_close(loaded("image", images, head="cls"), expected)
    # Resume: the reloaded model keeps training its λ.
    loaded.train()
    loaded.heads["cls"].loss(loaded("image", images, head="cls"), labels).backward()
    assert qkv.scales[0].grad is not None and qkv.scales[0].grad.abs().sum() > 0
    # Merge: a plain model with the same outputs, whose config no longer records a pathway.
    loaded.eval()
    assert merge_pathway(loaded) == 8 and loaded.encoder.config.pathway is None
    with torch.no_grad():
        torch.testing.assert_close(loaded("image", images, head="cls"), expected, atol=1e-5, rtol=1e-5)
    loaded.save_pretrained(tmp_path / "merged")
    assert "pathway" not in str(load_file(tmp_path / "merged" / "model.safetensors").keys())
    assert MetaTransformer.from_pretrained(tmp_path / "merged").encoder.config.pathway is None
