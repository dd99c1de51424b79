"""The embedding pipeline is driven by the modality registry alone: a 13th modality registered in this
test module embeds a folder of its files through ``metatransformer embed`` with no change to shared code."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from metatransformer import MetaTransformer, create_model
from metatransformer.batching import Padded, pad_collate
from metatransformer.cli import main
from metatransformer.data2seq import TokenSequence, Tokenizer
from metatransformer.datasets import ReadError, check_file, read
from metatransformer.registry import MODALITIES, register_modality


def read_spectrum(path, **options):
    """A '.spec' file: one float per line → (n,) float32."""
    path = check_file(path)
    try:
        values = np.loadtxt(path, dtype=np.float32, ndmin=1)
    except ValueError as err:
        raise ReadError(f"{path}: not a list of numbers ({err})") from err
    return torch.from_numpy(values)


class SpectrumTokenizer(Tokenizer):
    """Inputs: ``Padded`` values (b, l) and mask (b, l) → one token per value, plus a cls token."""

    def __init__(self, *, dim: int, scale: float = 1.0) -> None:
        super().__init__(dim=dim)
        self.scale = scale
        self.proj = torch.nn.Linear(1, dim)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, dim))
        self.num_prefix_tokens = 1

    def forward(self, batch: Padded) -> TokenSequence:
        tokens = self.proj(batch.values.unsqueeze(-1) * self.scale)  # b l d
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], 1)
        mask = torch.cat([batch.mask.new_ones(batch.mask.shape[0], 1), batch.mask], 1)
        return self.sequence(tokens, mask)


@pytest.fixture
def spectrum_modality():
    spec = register_modality("spectrum", tokenizer=SpectrumTokenizer, reader=read_spectrum, suffixes=(".spec",),
                             collate=pad_collate, aliases=("spectra",))
    yield spec
    MODALITIES.unregister("spectrum")


def test_a_thirteenth_modality_embeds_a_folder_through_the_cli(tmp_path, spectrum_modality):
    folder = tmp_path / "spectra"
    folder.mkdir()
    lengths = {"a.spec": 3, "b.spec": 7, "c.spec": 5}
    for name, n in lengths.items():
        np.savetxt(folder / name, np.arange(n, dtype=np.float32))
    (folder / "bad.spec").write_text("not numbers\n")
    (folder / "ignored.txt").write_text("1\n2\n")
    assert read(folder / "a.spec").tolist() == [0.0, 1.0, 2.0]  # suffix inference through the registry

    model = create_model("nano", modalities=["spectra"])
    model.save_pretrained(tmp_path / "model")
    output = tmp_path / "out" / "emb.safetensors"
    assert main(["embed", str(folder), "--model", str(tmp_path / "model"), "--batch-size", "4",
                 "--output", str(output)]) == 0
    index = json.loads(output.with_suffix(".json").read_text())
    assert index["modality"] == "spectrum"
    assert [p.rsplit("/", 1)[1] for p in index["files"]] == ["a.spec", "b.spec", "c.spec"]
    assert list(index["errors"]) == [str(folder / "bad.spec")] and "bad.spec" in index["errors"][str(folder / "bad.spec")]
    embeddings = load_file(output)["embeddings"]

    # Each row equals the file embedded alone (padding in the batch changes nothing), with the
    # values written here rather than read back by the library.
    loaded = MetaTransformer.from_pretrained(tmp_path / "model").eval()
    for row, (name, n) in enumerate(lengths.items()):
        alone = Padded(torch.arange(n, dtype=torch.float32)[None], torch.ones(1, n, dtype=torch.bool))
        with torch.no_grad():
            expected = loaded.embed("spectrum", alone).pooled[0]
        torch.testing.assert_close(embeddings[row], expected, atol=1e-5, rtol=1e-5)


def test_a_table_file_gives_one_embedding_per_row(tmp_path):
    pandas = pytest.importorskip("pandas")
    from metatransformer.datasets import TableSchema

    frame = pandas.DataFrame({"age": [30.0, 41.0, None], "job": ["a", "b", "zzz"]})
    schema = TableSchema.fit(pandas.DataFrame({"age": [20.0, 60.0], "job": ["a", "b"]}), categorical=("job",))
    model = create_model("nano", modalities={"tabular": {"schema": schema.to_dict()}})
    model.save_pretrained(tmp_path / "model")
    frame.to_csv(tmp_path / "people.csv", index=False)
    output = tmp_path / "emb.safetensors"
    assert main(["embed", str(tmp_path / "people.csv"), "--model", str(tmp_path / "model"), "--output", str(output)]) == 0
    index = json.loads(output.with_suffix(".json").read_text())
    assert index["files"] == [f"{tmp_path / 'people.csv'}#{i}" for i in range(3)] and not index["errors"]
    embeddings = load_file(output)["embeddings"]
    loaded = MetaTransformer.from_pretrained(tmp_path / "model").eval()
    with torch.no_grad():
        expected = loaded.embed("tabular", schema.encode(frame.iloc[[2]].reset_index(drop=True))).pooled[0]
    torch.testing.assert_close(embeddings[2], expected, atol=1e-5, rtol=1e-5)


def test_any_failure_of_one_file_is_recorded_and_the_others_are_kept(tmp_path):
    def flaky_reader(path, **options):  # an exception type no reader is meant to raise
        if path.name == "b.spec":
            raise KeyError("something unexpected")
        return read_spectrum(path, **options)

    register_modality("flaky_spectrum", tokenizer=SpectrumTokenizer, reader=flaky_reader, collate=pad_collate)
    try:
        folder = tmp_path / "spectra"
        folder.mkdir()
        for name in ("a.spec", "b.spec", "c.spec"):
            np.savetxt(folder / name, np.arange(4, dtype=np.float32))
        model = create_model("nano", modalities=["flaky_spectrum"]).eval()
        from metatransformer.embed import embed_files

        result = embed_files(model, "flaky_spectrum", sorted(folder.iterdir()), batch_size=2)
        assert [p.rsplit("/", 1)[1] for p in result.paths] == ["a.spec", "c.spec"]
        assert result.errors == {str(folder / "b.spec"): f"{folder / 'b.spec'}: KeyError: 'something unexpected'"}
        assert result.embeddings.shape == (2, 64)
        with pytest.raises(ValueError, match="batch_size must be >= 1"):
            embed_files(model, "flaky_spectrum", [], batch_size=0)
    finally:
        MODALITIES.unregister("flaky_spectrum")
