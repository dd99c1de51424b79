"""Reading graphs (GraphML, GML, edge lists) into ``torch_geometric.data.Data``, and turning other graph
objects (networkx graphs, bare ``edge_index`` tensors) into checked ``Data``."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import torch

from .._optional import require
from .registry import ReadError, check_file

GRAPH_SUFFIXES = (".graphml", ".gml", ".edgelist", ".edges")
MAX_GRAPH_BYTES = 1 << 30
MAX_EDGE_FEATURES = 1024
MAX_NODES = 1 << 22  # checked before any per-node tensor is built (the tokenizer takes far fewer)


def read_graph(path: str | os.PathLike, *, directed: bool | None = None, num_nodes: int | None = None) -> Any:
    """Read a graph file.

    Formats: GraphML (``.graphml``) and GML (``.gml``) through networkx, numeric node and edge
    attributes becoming ``x`` and ``edge_attr`` (in sorted attribute-name order, missing values 0);
    edge lists (``.edgelist``, ``.edges``: one ``source target [value ...]`` per line, ``#`` comments,
    whitespace or commas), extra numeric values becoming ``edge_attr``. Edge-list nodes that are all
    integers are nodes ``0 .. max id`` (isolated ids in between are kept); otherwise they are
    numbered in order of appearance.

    Args:
        path: the file.
        directed: keep edges one-way; False adds each reverse edge (PyG's convention for undirected
            graphs); None follows the file (GraphML/GML declare it; edge lists are undirected).
        num_nodes: edge lists only: the node count, for isolated nodes after the last id; an edge to a
            node ``>= num_nodes`` is an error.

    Returns:
        a ``torch_geometric.data.Data`` with ``edge_index`` (2, e) int64, ``num_nodes``, and ``x``
        (n, f) / ``edge_attr`` (e, g) float32 when the file has numeric attributes.

    Raises:
        ReadError: the file is missing, empty or malformed, or an edge refers to a node the file
            does not declare (GraphML, or ``num_nodes`` for edge lists).
    """
    path = check_file(path, max_bytes=MAX_GRAPH_BYTES)
    suffix = path.suffix.lower()
    if suffix in (".graphml", ".gml"):
        data = _read_networkx_file(path, suffix, directed)
    elif suffix in (".edgelist", ".edges", ".txt", ".csv", ".tsv"):
        data = _read_edge_list(path, directed, num_nodes)
    else:
        raise ReadError(f"{path}: unknown graph suffix {suffix!r}; use one of {', '.join(GRAPH_SUFFIXES)}")
    try:
        check_data(data, where=str(path))  # NaN attributes, node counts
    except ValueError as err:
        raise ReadError(str(err)) from None
    return data


def to_data(graph: Any, *, where: str = "graph") -> Any:
    """A ``Data`` (checked), networkx graph or (2, e) ``edge_index`` tensor as a checked ``Data``.

    Raises:
        ValueError: naming the field: an ``edge_index`` that is not (2, e) integers or refers to a node
            the graph does not have, or ``x`` / ``edge_attr`` rows that do not match the nodes / edges.
    """
    data_cls = require("torch_geometric.data").Data
    if isinstance(graph, data_cls):
        data = graph
    elif isinstance(graph, torch.Tensor):
        if graph.dim() != 2 or graph.shape[0] != 2:
            raise ValueError(f"{where}: an edge_index tensor must be (2, edges), got {tuple(graph.shape)}")
        data = data_cls(edge_index=graph.long(), num_nodes=int(graph.max()) + 1 if graph.numel() else 0)
    elif hasattr(graph, "nodes") and hasattr(graph, "edges"):
        data = from_networkx(graph)
    else:
        raise TypeError(f"{where}: expected a torch_geometric Data, a networkx graph or an edge_index tensor, "
                        f"got {type(graph).__name__}")
    check_data(data, where=where)
    return data


def check_data(data: Any, *, where: str = "graph") -> None:
    """ValueError naming the field when a ``Data``'s ``edge_index``, ``x`` or ``edge_attr`` are inconsistent."""
    edge_index = data.edge_index
    if edge_index is None:
        raise ValueError(f"{where}: edge_index is missing")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2 or edge_index.is_floating_point():
        raise ValueError(f"{where}: edge_index must be (2, edges) integers, got {edge_index.dtype} "
                         f"{tuple(edge_index.shape)}")
    n = data.num_nodes
    if n is None or n < 1:
        raise ValueError(f"{where}: the graph has no nodes")
    if n > MAX_NODES:
        raise ValueError(f"{where}: {n:,} nodes is more than the {MAX_NODES:,} accepted")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
        bad = int(edge_index.max()) if int(edge_index.max()) >= n else int(edge_index.min())
        raise ValueError(f"{where}: edge_index refers to node {bad}, but the graph has {n} nodes (0..{n - 1})")
    x = getattr(data, "x", None)
    if x is not None and (x.dim() != 2 or x.shape[0] != n):
        raise ValueError(f"{where}: x must be (num_nodes={n}, features), got {tuple(x.shape)}")
    edge_attr = getattr(data, "edge_attr", None)
    if edge_attr is not None and (edge_attr.dim() != 2 or edge_attr.shape[0] != edge_index.shape[1]):
        raise ValueError(f"{where}: edge_attr must be (edges={edge_index.shape[1]}, features), "
                         f"got {tuple(edge_attr.shape)}")
    for name, values in (("x", x), ("edge_attr", edge_attr)):
        if values is not None and values.is_floating_point() and not torch.isfinite(values).all():
            raise ValueError(f"{where}: {name} contains NaN or infinite values")


def from_networkx(graph: Any) -> Any:
    """A networkx graph as ``Data``: nodes in the graph's order, numeric node/edge attributes (sorted by
    name, missing values 0) as float ``x`` / ``edge_attr``, undirected edges in both directions."""
    data_cls = require("torch_geometric.data").Data
    nodes = list(graph.nodes)
    position = {node: i for i, node in enumerate(nodes)}
    directed = graph.is_directed()
    edges = list(graph.edges(data=True))
    pairs = [(position[u], position[v]) for u, v, _ in edges]
    node_keys = _numeric_keys(attrs for _, attrs in graph.nodes(data=True))
    edge_keys = _numeric_keys(attrs for _, _, attrs in edges)
    edge_rows = [[float(attrs.get(key, 0.0)) for key in edge_keys] for _, _, attrs in edges]
    if not directed:
        pairs = pairs + [(v, u) for u, v in pairs]
        edge_rows = edge_rows + edge_rows
    edge_index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T.contiguous()
    data = data_cls(edge_index=edge_index, num_nodes=len(nodes))
    if node_keys:
        data.x = torch.tensor([[float(graph.nodes[node].get(key, 0.0)) for key in node_keys] for node in nodes],
                              dtype=torch.float32)
    if edge_keys:
        data.edge_attr = torch.tensor(edge_rows, dtype=torch.float32).reshape(-1, len(edge_keys))
    return data


def _numeric_keys(attribute_dicts: Any) -> list[str]:
    keys: set[str] = set()
    for attrs in attribute_dicts:
        keys.update(k for k, v in attrs.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    return sorted(keys)


def _read_networkx_file(path: Path, suffix: str, directed: bool | None) -> Any:
    nx = require("networkx")
    try:
        if suffix == ".graphml":
            _check_graphml_endpoints(path)
            graph = nx.read_graphml(path)
        else:
            graph = nx.read_gml(path, label=None)
    except ReadError:
        raise
    except (nx.NetworkXError, ET.ParseError, ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ReadError(f"{path}: not a readable {suffix[1:].upper()} graph: {err}") from err
    if graph.number_of_nodes() == 0:
        raise ReadError(f"{path}: the graph has no nodes")
    if directed is not None and directed != graph.is_directed():
        graph = graph.to_directed() if directed else graph.to_undirected()
    return from_networkx(graph)


def _check_graphml_endpoints(path: Path) -> None:
    """networkx silently creates the nodes that GraphML edges name but never declare; refuse them."""
    declared: set[str] = set()
    endpoints: list[tuple[str, str]] = []
    for _, element in ET.iterparse(path):
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "node":
            declared.add(element.get("id"))
        elif tag == "edge":
            endpoints.append((element.get("source"), element.get("target")))
    for source, target in endpoints:
        for node in (source, target):
            if node not in declared:
                raise ReadError(f"{path}: an edge ({source!r} -> {target!r}) refers to node {node!r}, "
                                "which the file does not declare")


def _read_edge_list(path: Path, directed: bool | None, num_nodes: int | None) -> Any:
    data_cls = require("torch_geometric.data").Data
    rows: list[list[str]] = []
    try:
        with open(path, encoding="utf-8") as stream:
            for line_number, line in enumerate(stream, 1):
                line = line.split("#", 1)[0].replace(",", " ").split()
                if not line:
                    continue
                if len(line) < 2:
                    raise ReadError(f"{path}: line {line_number} has one value; expected 'source target [values]'")
                rows.append(line)
    except UnicodeDecodeError as err:
        raise ReadError(f"{path}: not a text edge list: {err}") from err
    if not rows:
        raise ReadError(f"{path}: the edge list holds no edges")
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ReadError(f"{path}: lines have different numbers of values: {sorted(widths)}")
    if len(rows[0]) - 2 > MAX_EDGE_FEATURES:
        raise ReadError(f"{path}: {len(rows[0]) - 2} values per edge, more than {MAX_EDGE_FEATURES}")
    names = [name for row in rows for name in row[:2]]
    if all(name.lstrip("-").isdigit() for name in names):
        ids = [int(name) for name in names]
        if min(ids) < 0:
            raise ReadError(f"{path}: node ids must be >= 0, found {min(ids)}")
        if max(ids) >= MAX_NODES:
            raise ReadError(f"{path}: node id {max(ids):,} is beyond the {MAX_NODES:,} nodes accepted")
        count = max(ids) + 1
        if num_nodes is not None and count > num_nodes:
            raise ReadError(f"{path}: an edge refers to node {count - 1}, but num_nodes={num_nodes}")
        count = num_nodes or count
    else:
        if num_nodes is not None:
            raise ReadError(f"{path}: num_nodes needs integer node ids")
        position: dict[str, int] = {}
        ids = [position.setdefault(name, len(position)) for name in names]
        count = len(position)
    edge_index = torch.tensor(ids, dtype=torch.long).view(-1, 2).T.contiguous()
    try:
        values = torch.tensor([[float(v) for v in row[2:]] for row in rows], dtype=torch.float32)
    except ValueError as err:
        raise ReadError(f"{path}: an edge value is not a number: {err}") from err
    if not torch.isfinite(values).all():
        raise ReadError(f"{path}: the edge values contain NaN or infinite values")
    if not directed:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
        values = torch.cat([values, values])
    data = data_cls(edge_index=edge_index, num_nodes=count)
    if values.shape[1]:
        data.edge_attr = values
    return data
