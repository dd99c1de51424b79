import pytest
import torch
import torch.nn as nn

from metatransformer.encoders import ENCODER_PRESETS, EncoderConfig, SharedEncoder, create_encoder, get_encoder_config
from tests.conftest import reference_blocks


def test_presets_match_the_published_parameter_counts():
    # SPEC §2: 85,054,464 (base) and 302,309,376 (large) parameters in the block-only file.
    def count(config):
        d, h = config.dim, config.mlp_hidden_dim
        per_block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * h + h) + (h * d + d)
        return per_block * config.depth
    assert count(ENCODER_PRESETS["base"]) == 85_054_464
    assert count(ENCODER_PRESETS["large"]) == 302_309_376
    encoder = SharedEncoder(config=ENCODER_PRESETS["base"])
    assert sum(p.numel() for p in encoder.parameters()) == 85_054_464
    assert len(encoder.state_dict()) == 144


def test_config_records_activation_and_eps():
    encoder = create_encoder("nano", act="quick_gelu", norm_eps=1e-6, final_norm=True)
    assert encoder.blocks[0].norm1.eps == 1e-6
    assert type(encoder.blocks[0].mlp.act).__name__ == "QuickGELU"
    assert isinstance(encoder.norm, nn.LayerNorm)
    assert create_encoder("nano").blocks[0].norm1.eps == 1e-5


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="divisible"):
        EncoderConfig(dim=65, depth=1, num_heads=4)
    with pytest.raises(ValueError, match="act"):
        EncoderConfig(dim=64, depth=1, num_heads=4, act="relu")
    with pytest.raises(ValueError, match="unknown field.*'heads'"):
        EncoderConfig.from_dict({"dim": 64, "depth": 1, "heads": 4})
    with pytest.raises(ValueError, match="unknown encoder preset 'huge'.*base"):
        get_encoder_config("huge")


def test_quick_gelu_changes_the_output():
    # A wrong activation loads strictly, so it has to live in the config: prove it matters.
    reference = reference_blocks(64, 4, 2)
    x = torch.randn(2, 7, 64)
    gelu = create_encoder("nano", checkpoint=reference.state_dict()).eval()
    quick = create_encoder("nano", checkpoint=reference.state_dict(), act="quick_gelu").eval()
    assert torch.allclose(gelu(x), reference(x), atol=1e-5)
    assert (quick(x) - reference(x)).abs().max() > 1e-3


@pytest.mark.parametrize("fused_attn", [True, False], ids=["sdpa", "manual-attention"])
def test_padding_does_not_change_real_positions(fused_attn):
    encoder = create_encoder("nano").eval()
    for block in encoder.blocks:  # timm has two attention code paths; the mask must work on both
        block.attn.fused_attn = fused_attn
    real = torch.randn(1, 5, 64)
    junk = torch.randn(1, 4, 64) * 50
    alone = encoder(real)
    padded = encoder(torch.cat([real, junk], dim=1), mask=torch.tensor([[True] * 5 + [False] * 4]))
    torch.testing.assert_close(padded[:, :5], alone, atol=1e-5, rtol=0)
    # Padding in the middle of a batch: each row equals the row encoded alone.
    batch = torch.cat([torch.cat([real, junk], 1), torch.randn(1, 9, 64)])
    mask = torch.tensor([[True] * 5 + [False] * 4, [True] * 9])
    out = encoder(batch, mask=mask)
    torch.testing.assert_close(out[0, :5], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], encoder(batch[1:])[0], atol=1e-5, rtol=0)


def test_fully_padded_row_gives_finite_output():
    encoder = create_encoder("nano").eval()
    out = encoder(torch.randn(2, 3, 64), mask=torch.tensor([[True, True, False], [False, False, False]]))
    assert torch.isfinite(out).all()


def test_bad_inputs_raise_clear_errors():
    encoder = create_encoder("nano")
    with pytest.raises(ValueError, match=r"\(batch, tokens, 64\)"):
        encoder(torch.randn(2, 3, 32))
    with pytest.raises(ValueError, match="mask shape"):
        encoder(torch.randn(2, 3, 64), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        encoder(torch.randn(2, 3, 64), mask=torch.ones(2, 3))


def test_freeze_and_unfreeze_last_blocks():
    encoder = create_encoder("nano", final_norm=True).freeze()
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.unfreeze(last_n_blocks=1)
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in encoder.named_parameters() if n.startswith(("blocks.1.", "norm."))}
    encoder.unfreeze()
    assert all(p.requires_grad for p in encoder.parameters())
    with pytest.raises(ValueError, match="last_n_blocks"):
        encoder.unfreeze(last_n_blocks=3)


def test_gradient_checkpointing_runs_and_gives_the_same_gradients(monkeypatch):
    from metatransformer.encoders import encoder as encoder_module

    calls = []

    def counting_checkpoint(*args, **kwargs):
        calls.append(1)
        return torch.utils.checkpoint.checkpoint(*args, **kwargs)

    monkeypatch.setattr(encoder_module, "checkpoint", counting_checkpoint)
    encoder = create_encoder("nano").train()
    x = torch.randn(2, 6, 64)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    encoder(x, mask).square().mean().backward()
    plain = [p.grad.clone() for p in encoder.parameters()]
    encoder.zero_grad()
    encoder.set_grad_checkpointing(True)
    encoder(x, mask).square().mean().backward()
    assert len(calls) == len(encoder.blocks)  # every block went through the checkpoint
    for expected, param in zip(plain, encoder.parameters()):
        torch.testing.assert_close(param.grad, expected)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    encoder = create_encoder("nano").eval()
    compiled = torch.compile(encoder)
    x = torch.randn(2, 6, 64)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    torch.testing.assert_close(compiled(x, mask), encoder(x, mask), atol=1e-5, rtol=1e-5)
