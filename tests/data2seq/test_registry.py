import pytest
import torch

from metatransformer.data2seq import (
    Data2Seq,
    TokenSequence,
    Tokenizer,
    canonical_modality,
    create_tokenizer,
    list_modalities,
    register_tokenizer,
)


@pytest.mark.parametrize("spelling, canonical", [
    ("image", "image"), ("Image", "image"), ("x-ray", "xray"), ("X-Ray", "xray"), ("x_ray", "xray"),
    ("xray", "xray"), ("thermal", "infrared"),
])
def test_common_spellings(spelling, canonical):
    assert canonical_modality(spelling) == canonical


def test_unknown_modality_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown modality 'smell'.*image.*infrared.*xray"):
        Data2Seq(modality="smell", dim=768)


def test_bad_option_names_the_tokenizer():
    with pytest.raises(TypeError, match="ImageTokenizer.*patch"):
        create_tokenizer("image", 64, patch=16)


def test_a_new_modality_registers_without_touching_shared_code():
    @register_tokenizer("test-scalar", aliases=("scalar_test",))
    class ScalarTokenizer(Tokenizer):
        """Inputs: values (b, n) float → one token per value."""

        def __init__(self, *, dim: int) -> None:
            super().__init__(dim=dim)
            self.proj = torch.nn.Linear(1, dim)

        def forward(self, values: torch.Tensor) -> TokenSequence:
            tokens = self.proj(values.unsqueeze(-1))
            return TokenSequence(tokens, ~torch.isnan(values))

    assert "test_scalar" in list_modalities()
    tokenizer = Data2Seq(modality="Scalar-Test", dim=8)
    tokens, mask = tokenizer(torch.tensor([[1.0, float("nan")]]))
    assert tokens.shape == (1, 2, 8) and mask.tolist() == [[True, False]]
    with pytest.raises(ValueError, match="already registered"):
        register_tokenizer("test-scalar")(type("Other", (Tokenizer,), {}))


def test_token_sequence_concat():
    a = TokenSequence(torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))
    b = TokenSequence(torch.ones(2, 1, 4), torch.zeros(2, 1, dtype=torch.bool))
    joint = TokenSequence.concat([a, b])
    assert joint.tokens.shape == (2, 4, 4) and joint.mask[:, 3].sum() == 0
