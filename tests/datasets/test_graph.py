import pytest
import torch

from metatransformer.datasets import ReadError, read, read_graph
from metatransformer.datasets.graph import to_data

nx = pytest.importorskip("networkx")
pytest.importorskip("torch_geometric")


def _edges(data) -> set[tuple[int, int]]:
    return set(map(tuple, data.edge_index.T.tolist()))


def test_graphml_written_by_networkx_keeps_nodes_edges_and_attributes(tmp_path):
    graph = nx.Graph()
    graph.add_node("a", mass=1.5, charge=-1.0)
    graph.add_node("b", mass=2.0, charge=0.0)
    graph.add_node("c", mass=3.0, charge=1.0)
    graph.add_edge("a", "b", weight=0.5)
    graph.add_edge("b", "c", weight=2.0)
    path = tmp_path / "g.graphml"
    nx.write_graphml(graph, path)
    data = read(path)  # .graphml infers the graph reader
    assert data.num_nodes == 3
    assert _edges(data) == {(0, 1), (1, 0), (1, 2), (2, 1)}
    assert data.x.tolist() == [[-1.0, 1.5], [0.0, 2.0], [1.0, 3.0]]  # attributes in name order: charge, mass
    weights = {edge: w for edge, w in zip(map(tuple, data.edge_index.T.tolist()), data.edge_attr[:, 0].tolist())}
    assert weights == {(0, 1): 0.5, (1, 0): 0.5, (1, 2): 2.0, (2, 1): 2.0}
    directed = nx.DiGraph([(0, 1), (1, 2)])
    nx.write_graphml(directed, tmp_path / "d.graphml")
    assert _edges(read_graph(tmp_path / "d.graphml")) == {(0, 1), (1, 2)}
    assert len(_edges(read_graph(tmp_path / "d.graphml", directed=False))) == 4


def test_gml_file(tmp_path):
    path = tmp_path / "karate.gml"
    nx.write_gml(nx.karate_club_graph(), path)
    data = read_graph(path)
    assert data.num_nodes == 34 and data.edge_index.shape == (2, 2 * 78)


def test_edge_list_integer_ids_weights_and_num_nodes(tmp_path):
    path = tmp_path / "g.edgelist"
    path.write_text("# source target weight\n0 1 0.5\n1 3 2.0\n")
    data = read_graph(path)
    assert data.num_nodes == 4  # node 2 is isolated but kept
    assert data.edge_index.tolist() == [[0, 1, 1, 3], [1, 3, 0, 1]]
    assert data.edge_attr[:, 0].tolist() == [0.5, 2.0, 0.5, 2.0]
    assert read_graph(path, num_nodes=6).num_nodes == 6
    assert read_graph(path, directed=True).edge_index.tolist() == [[0, 1], [1, 3]]
    with pytest.raises(ReadError, match=f"{path}.*refers to node 3.*num_nodes=3"):
        read_graph(path, num_nodes=3)
    named = tmp_path / "named.edges"
    named.write_text("alice,bob\nbob,carol\n")
    data = read_graph(named)
    assert data.num_nodes == 3 and _edges(data) == {(0, 1), (1, 0), (1, 2), (2, 1)}


def test_malformed_graph_files_raise_read_error_naming_the_file(tmp_path):
    undeclared = tmp_path / "undeclared.graphml"
    undeclared.write_text("""<?xml version="1.0" encoding="UTF-8"?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns"><graph id="G" edgedefault="undirected">
<node id="a"/><node id="b"/><edge source="a" target="c"/></graph></graphml>""")
    broken = tmp_path / "broken.graphml"
    broken.write_text("<graphml><graph><node id='a'>")
    one_value = tmp_path / "one.edgelist"
    one_value.write_text("0 1\n2\n")
    text_weight = tmp_path / "weight.edgelist"
    text_weight.write_text("0 1 heavy\n")
    comments = tmp_path / "comments.edgelist"
    comments.write_text("# nothing\n")
    for path, reason in [(undeclared, "node 'c'"), (broken, "not a readable GRAPHML"), (one_value, "line 2"),
                         (text_weight, "not a number"), (comments, "no edges"),
                         (tmp_path / "missing.graphml", "no such file")]:
        with pytest.raises(ReadError, match=reason) as info:
            read_graph(path)
        assert str(path) in str(info.value)


def test_to_data_checks_fields():
    Data = pytest.importorskip("torch_geometric.data").Data
    with pytest.raises(ValueError, match="edge_index refers to node 3, but the graph has 3 nodes"):
        to_data(Data(edge_index=torch.tensor([[0, 1], [1, 3]]), num_nodes=3))
    with pytest.raises(ValueError, match="x must be"):
        to_data(Data(edge_index=torch.tensor([[0], [1]]), x=torch.zeros(3, 2), num_nodes=2))
    with pytest.raises(ValueError, match="edge_attr must be"):
        to_data(Data(edge_index=torch.tensor([[0], [1]]), x=torch.zeros(2, 2), edge_attr=torch.zeros(2, 1)))
    data = to_data(torch.tensor([[0, 2], [2, 1]]))
    assert data.num_nodes == 3 and data.edge_index.tolist() == [[0, 2], [2, 1]]
    data = to_data(nx.path_graph(3))
    assert data.num_nodes == 3 and _edges(data) == {(0, 1), (1, 2), (1, 0), (2, 1)}


def test_absurd_node_ids_and_nan_attributes_are_read_errors(tmp_path):
    huge = tmp_path / "huge.edgelist"
    huge.write_text("0 50000000\n")  # 11 bytes that would otherwise build a 50-million-node batch vector
    with pytest.raises(ReadError, match="huge.edgelist: node id 50,000,000 is beyond"):
        read_graph(huge)
    overflow = tmp_path / "overflow.edgelist"
    overflow.write_text("0 99999999999999999999999\n")
    with pytest.raises(ReadError, match="overflow.edgelist"):
        read_graph(overflow)
    gml = tmp_path / "nan.gml"
    gml.write_text("graph [\n node [ id 0 w NAN ]\n node [ id 1 w 1.0 ]\n edge [ source 0 target 1 ]\n]\n")
    with pytest.raises(ReadError, match="nan.gml: x contains NaN"):
        read_graph(gml)
