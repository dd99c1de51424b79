import pytest
import torch

from metatransformer.data2seq import (
    Data2Seq,
    TokenSequence,
    Tokenizer,
    canonical_modality,
    create_tokenizer,
    list_modalities,
    register_modality,
)
from metatransformer.registry import MODALITIES, Registry


@pytest.mark.parametrize("spelling, canonical", [
    ("image", "image"), ("Image", "image"), ("x-ray", "xray"), ("X-Ray", "xray"), ("x_ray", "xray"),
    ("xray", "xray"), ("thermal", "infrared"),
])
def test_common_spellings(spelling, canonical):
    assert canonical_modality(spelling) == canonical


def test_unknown_modality_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown modality 'smell'.*image.*infrared.*xray"):
        Data2Seq(modality="smell", dim=768)


def test_bad_option_names_the_tokenizer_and_the_known_options():
    with pytest.raises(TypeError, match="ImageTokenizer.*unknown option.*'patch'.*patch_size"):
        create_tokenizer("image", 64, patch=16)


@pytest.mark.parametrize("options, message", [
    ({"patch_size": 16.0}, "patch_size: expected an integer"),
    ({"cls_token": "false"}, "cls_token: expected true/false"),
    ({"patch_size": 0}, "patch_size: must be >= 1"),
    ({"norm_eps": -1}, "norm_eps: must be > 0"),
])
def test_option_types_and_ranges_are_checked_before_building(options, message):
    with pytest.raises((TypeError, ValueError), match=message):
        create_tokenizer("image", 64, **options)


class _ScalarTokenizer(Tokenizer):
    """Inputs: values (b, n) float, NaN = missing → one token per value."""

    def __init__(self, *, dim: int) -> None:
        super().__init__(dim=dim)
        self.proj = torch.nn.Linear(1, dim)

    def forward(self, values: torch.Tensor) -> TokenSequence:
        return self.sequence(self.proj(values.nan_to_num().unsqueeze(-1)), ~torch.isnan(values))


@pytest.fixture
def scalar_modality():
    spec = register_modality("test-scalar", tokenizer=_ScalarTokenizer, aliases=("scalar_test",))
    yield spec
    MODALITIES.unregister("test_scalar")


def test_a_new_modality_registers_without_touching_shared_code(scalar_modality):
    assert "test_scalar" in list_modalities()
    sequence = Data2Seq(modality="Scalar-Test", dim=8)(torch.tensor([[1.0, float("nan")]]))
    assert sequence.tokens.shape == (1, 2, 8) and sequence.mask.tolist() == [[True, False]]
    assert sequence.modalities == ("test_scalar",) and not sequence.prefix.any()
    with pytest.raises(ValueError, match="already registered"):
        register_modality("test-scalar", tokenizer=type("Other", (Tokenizer,), {}))


def test_an_alias_cannot_take_over_a_name_or_another_alias(scalar_modality):
    other = type("Other", (Tokenizer,), {})
    with pytest.raises(ValueError, match="alias 'image' is already taken by 'image'"):
        register_modality("hijack", tokenizer=other, aliases=("image",))
    with pytest.raises(ValueError, match="alias 'thermal' is already taken by 'infrared'"):
        register_modality("hijack", tokenizer=other, aliases=("thermal",))
    with pytest.raises(ValueError, match="already an alias of 'test_scalar'"):
        register_modality("scalar-test", tokenizer=other)
    assert "hijack" not in MODALITIES and canonical_modality("image") == "image"


def test_registry_names_are_validated():
    registry = Registry("widget")
    with pytest.raises(ValueError, match="must start with a letter"):
        registry.register("3d", object())
    registry.register("Big-Widget", 1, aliases=("bw",))
    assert registry.get("big widget") == 1 and registry.get("BW") == 1 and "bw" in registry
    assert registry.names() == ["big_widget"] and registry.aliases_of("bw") == ["bw"]


def test_token_sequence_concat_keeps_prefix_and_modality_records():
    a = TokenSequence.with_prefix(torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), 1, "image")
    b = TokenSequence.with_prefix(torch.ones(2, 2, 4), torch.tensor([[True, False]] * 2), 1, "audio")
    joint = TokenSequence.concat([a, b])
    assert joint.tokens.shape == (2, 5, 4) and joint.mask[:, 4].sum() == 0
    assert joint.prefix.tolist() == [True, False, False, True, False]
    assert joint.modalities == ("image", "audio") and joint.segment.tolist() == [0, 0, 0, 1, 1]
    assert joint.content_mask("image")[0].tolist() == [False, True, True, False, False]
    assert joint.content_mask()[0].tolist() == [False, True, True, False, False]  # audio's one content token is padding
    assert joint.cls_index("audio") == 3
    with pytest.raises(ValueError, match="batch size"):
        TokenSequence.concat([a, TokenSequence(torch.zeros(3, 1, 4), torch.ones(3, 1, dtype=torch.bool))])
