import numpy as np
import pytest
import torch

from metatransformer import create_encoder
from metatransformer.data2seq import Data2Seq, GraphTokenizer, get_modality
from metatransformer.data2seq.graph import graph_collate, laplacian_eigenvectors

nx = pytest.importorskip("networkx")
Data = pytest.importorskip("torch_geometric.data").Data


def _generic_graph(n: int, seed: int) -> "nx.Graph":
    """A connected random graph whose normalized Laplacian has well-separated eigenvalues and no
    eigenvector symmetric about 0 (as two leaves on one node make): its eigenvectors are unique up to
    a sign that sum(u**3) fixes, the case where TokenGT identifiers can be canonical."""
    for s in range(seed, seed + 1000):
        graph = nx.gnm_random_graph(n, 3 * n // 2, seed=s)
        if not nx.is_connected(graph):
            continue
        values, vectors = np.linalg.eigh(nx.normalized_laplacian_matrix(graph, nodelist=range(n)).toarray())
        if np.diff(values).min() > 1e-3 and np.abs((vectors[:, :16] ** 3).sum(0)).min() > 1e-3:
            return graph
    raise AssertionError("no generic graph found")


def _with_features(graph, seed: int):
    data = Data(edge_index=torch.tensor(list(graph.edges)).T, num_nodes=graph.number_of_nodes())
    data.edge_index = torch.cat([data.edge_index, data.edge_index.flip(0)], dim=1)
    gen = torch.Generator().manual_seed(seed)
    data.x = torch.randn(data.num_nodes, 4, generator=gen)
    data.edge_attr = torch.randn(data.edge_index.shape[1], 2, generator=gen)
    return data


def _pooled(out, seq):
    content = seq.content_mask().unsqueeze(-1)
    return torch.cat([out[:, 0], (out * content).sum(1) / content.sum(1)], dim=-1)  # graph token ‖ mean


def test_identifiers_are_the_normalized_laplacian_eigenvectors():
    graph = _generic_graph(20, seed=0)
    reference = np.linalg.eigh(nx.normalized_laplacian_matrix(graph, nodelist=range(20)).toarray())[1][:, :16]
    data = graph_collate([graph])
    ours, mask = laplacian_eigenvectors(data.edge_index, data.batch, 1, 16)
    ours = ours[0].double().numpy()
    assert mask.all()
    signs = np.sign((ours * reference).sum(0))
    np.testing.assert_allclose(ours, reference * signs, atol=1e-5)
    assert ((ours ** 3).sum(0) > 0).all()  # canonical sign


def test_small_graphs_get_zero_padded_identifiers():
    data = graph_collate([nx.path_graph(4), _generic_graph(20, seed=1)])
    ids, mask = laplacian_eigenvectors(data.edge_index, data.batch, 2, 16)
    assert ids.shape == (2, 20, 16) and mask.sum(1).tolist() == [4, 20]
    assert ids[0, :, 4:].abs().max() == 0 and ids[0, 4:].abs().max() == 0
    # the 4 real columns are orthonormal, as eigenvectors of the 4-node path
    torch.testing.assert_close(ids[0, :4, :4].T @ ids[0, :4, :4], torch.eye(4), atol=1e-5, rtol=0)


def test_permuting_nodes_and_edges_gives_the_same_pooled_output():
    data = _with_features(_generic_graph(14, seed=2), seed=0)
    perm = torch.randperm(data.num_nodes)  # old node v becomes perm[v]
    edge_order = torch.randperm(data.edge_index.shape[1])
    permuted = Data(edge_index=perm[data.edge_index][:, edge_order], num_nodes=data.num_nodes,
                    edge_attr=data.edge_attr[edge_order], x=torch.empty_like(data.x).index_copy_(0, perm, data.x))
    tokenizer = GraphTokenizer(dim=64, node_features=4, edge_features=2).eval()
    encoder = create_encoder("nano").eval()
    with torch.no_grad():
        pooled = []
        for graph in (data, permuted):
            seq = tokenizer([graph])
            pooled.append(_pooled(encoder(seq.tokens, seq.mask), seq))
        torch.testing.assert_close(pooled[0], pooled[1], atol=1e-5, rtol=1e-5)
        # control: the identifiers matter, so training-time sign flips change the output
        tokenizer.train()
        seq = tokenizer([data])
        assert (_pooled(encoder(seq.tokens, seq.mask), seq) - pooled[0]).abs().max() > 1e-3


def test_a_batch_of_graphs_encodes_as_each_graph_alone():
    graphs = [_with_features(_generic_graph(n, seed=n), seed=n) for n in (7, 17, 11)]
    tokenizer = Data2Seq("graph", dim=64, node_features=4, edge_features=2).eval()
    encoder = create_encoder("nano").eval()
    with torch.no_grad():
        seq = tokenizer(graph_collate(graphs))
        out = encoder(seq.tokens, seq.mask)
        v, e = 17, max(g.edge_index.shape[1] for g in graphs)
        assert seq.tokens.shape == (3, 1 + v + e, 64)
        for i, graph in enumerate(graphs):
            n, m = graph.num_nodes, graph.edge_index.shape[1]
            assert seq.mask[i].sum() == 1 + n + m
            alone = tokenizer([graph])
            alone_out = encoder(alone.tokens, alone.mask)[0]
            torch.testing.assert_close(out[i][seq.mask[i]], alone_out, atol=1e-5, rtol=1e-5)


def test_files_networkx_graphs_and_edge_index_through_the_embedding_path(tmp_path):
    nx.write_graphml(nx.petersen_graph(), tmp_path / "petersen.graphml")
    (tmp_path / "triangle.edgelist").write_text("0 1\n1 2\n2 0\n")
    spec = get_modality("graph")
    items = [spec.reader(tmp_path / "petersen.graphml"), spec.reader(tmp_path / "triangle.edgelist"),
             nx.path_graph(6), torch.tensor([[0, 1, 2], [1, 2, 3]])]
    assert spec.transform is None
    batch = spec.collate(items)
    tokenizer = Data2Seq("graph", dim=64).eval()
    with torch.no_grad():
        seq = tokenizer(batch)
        out = create_encoder("nano")(seq.tokens, seq.mask)
    assert seq.mask.sum(1).tolist() == [1 + 10 + 30, 1 + 3 + 6, 1 + 6 + 10, 1 + 4 + 3]
    assert torch.isfinite(out).all() and seq.prefix.sum() == 1


def test_bad_graph_batches_raise():
    tokenizer = GraphTokenizer(dim=32, node_features=3)
    with pytest.raises(ValueError, match="node_features=3 needs x of width 3"):
        tokenizer([nx.path_graph(3)])
    with pytest.raises(ValueError, match="graph 1 has no x"):
        graph_collate([Data(edge_index=torch.tensor([[0], [1]]), x=torch.zeros(2, 3)), nx.path_graph(2)])
    with pytest.raises(ValueError, match="graph 0: edge_index refers to node 5"):
        tokenizer([Data(edge_index=torch.tensor([[0], [5]]), num_nodes=3)])
    with pytest.raises(ValueError, match="limited to 8"):
        GraphTokenizer(dim=32, max_nodes=8)([nx.path_graph(9)])
