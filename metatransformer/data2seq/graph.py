"""Graphs as token sets (TokenGT): one token per node and per edge, Laplacian-eigenvector node identifiers."""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from .._optional import require
from .._validation import check_range
from ..datasets.graph import GRAPH_SUFFIXES, read_graph, to_data
from ..registry import register_modality
from .base import ClsToken, TokenSequence, Tokenizer

# Shape legend: b graphs, v padded nodes per graph, e padded edges per graph, k eigenvectors, d width.

MAX_NODES = 8192  # dense eigendecomposition per graph: O(v^3) time, O(b v^2) memory
_PADDING_EIGENVALUE = 3.0  # above the normalized Laplacian's spectrum [0, 2]: padding eigenvectors sort last


def graph_collate(items: Sequence[Any]) -> Any:
    """Graphs (``Data``, networkx graphs or ``edge_index`` tensors) to one checked ``torch_geometric`` Batch."""
    batch_cls = require("torch_geometric.data").Batch
    data = [to_data(item, where=f"graph {i}") for i, item in enumerate(items)]
    for field in ("x", "edge_attr"):
        has = [getattr(d, field, None) is not None for d in data]
        if any(has) and not all(has):
            raise ValueError(f"graph {has.index(False)} has no {field} but graph {has.index(True)} has: "
                             f"a batch needs {field} on every graph or on none")
    return batch_cls.from_data_list(data)


def laplacian_eigenvectors(edge_index: torch.Tensor, batch: torch.Tensor, num_graphs: int, k: int,
                           *, max_nodes: int = MAX_NODES) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` eigenvectors of smallest eigenvalue of each graph's symmetric normalized Laplacian
    ``I - D^-1/2 A D^-1/2`` (edges taken as undirected, unweighted, self-loops dropped), with
    canonical signs.

    Graphs are padded to one dense (b, v, v) stack for ``torch.linalg.eigh`` (float64); padding nodes
    get eigenvalue 3, above the spectrum, so each graph's own eigenvectors come first and do not
    depend on the batch. A graph with fewer than ``k`` nodes has zero columns after its own ``n``.

    Sign canonicalisation: each eigenvector is flipped so that ``sum(u**3)`` (else ``sum(u)``) is
    positive; both are invariant to node order, so the identifiers are permutation-equivariant.
    Limits: an eigenvector whose values are symmetric about 0 (``u`` and ``-u`` the same multiset,
    e.g. antisymmetric modes of a path) keeps eigh's sign, and a repeated eigenvalue (disconnected
    or highly symmetric graphs) has no canonical basis; there, identifiers depend on node order and
    on the solver, as in TokenGT itself, which trains with random sign flips for that reason.

    Returns:
        eigenvectors (b, v, k) float32 (zero on padding nodes) and the node mask (b, v) bool.
    """
    counts = torch.bincount(batch, minlength=num_graphs)  # nodes per graph
    v = int(counts.max())
    if v > max_nodes:
        raise ValueError(f"a graph has {v} nodes; the dense Laplacian eigendecomposition is limited to "
                         f"{max_nodes} (max_nodes)")
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(batch.numel(), device=batch.device) - first[batch]  # node index within its graph
    node_mask = torch.arange(v, device=batch.device) < counts.unsqueeze(1)  # b v
    src, dst = edge_index
    keep = src != dst
    adj = torch.zeros(num_graphs, v, v, dtype=torch.float64, device=batch.device)
    g = batch[src[keep]]
    adj[g, local[src[keep]], local[dst[keep]]] = 1.0
    adj = torch.maximum(adj, adj.transpose(1, 2))  # undirected
    deg = adj.sum(-1)
    inv_sqrt = torch.where(deg > 0, deg.clamp_min(1).rsqrt(), torch.zeros_like(deg))
    lap = -inv_sqrt.unsqueeze(-1) * adj * inv_sqrt.unsqueeze(-2)
    diagonal = torch.where(node_mask, 1.0, _PADDING_EIGENVALUE).to(lap.dtype)
    lap.diagonal(dim1=-2, dim2=-1).copy_(diagonal)
    _, vectors = torch.linalg.eigh(lap)  # b v v, eigenvalues ascending
    vectors = vectors[..., :k] * node_mask.unsqueeze(-1)
    if vectors.shape[-1] < k:
        vectors = nn.functional.pad(vectors, (0, k - vectors.shape[-1]))
    vectors = vectors * (torch.arange(k, device=batch.device) < counts.unsqueeze(1)).unsqueeze(1)  # b v k
    vectors = vectors * _canonical_signs(vectors).unsqueeze(1)
    return vectors.float(), node_mask


def _canonical_signs(vectors: torch.Tensor) -> torch.Tensor:
    """(b, v, k) → (b, k) ±1 making ``sum(u**3)``, else ``sum(u)``, positive (node-order invariant)."""
    tol = 1e-8
    skew, total = vectors.pow(3).sum(1), vectors.sum(1)
    sign = torch.where(skew.abs() > tol, skew.sign(), torch.where(total.abs() > tol, total.sign(), 1.0))
    return sign


class GraphTokenizer(Tokenizer):
    """TokenGT: every node and every edge is a token; a learned graph token leads the sequence.

    Node ``v`` gets ``W_id [P_v ‖ P_v] + W_x x_v + type_node``; edge ``(u, v)`` gets
    ``W_id [P_u ‖ P_v] + W_e e_uv + type_edge``, where ``P`` are the node identifiers: the ``k``
    Laplacian eigenvectors of smallest eigenvalue (:func:`laplacian_eigenvectors`, canonical signs,
    zero-padded for graphs with fewer than ``k`` nodes), with a random sign flip per eigenvector and
    graph in training only. Sequences are ``[graph token, nodes (padded), edges (padded)]`` with a
    mask, so graphs of different sizes batch together and encode as they would alone. Edges are
    tokens as listed in ``edge_index`` (PyG lists an undirected edge in both directions).

    Args:
        dim: token width D.
        node_features: width of ``x`` to embed with a Linear; 0 ignores node features (structure only).
        edge_features: width of ``edge_attr`` to embed likewise; 0 ignores edge features.
        num_eigenvectors: k, the identifier width (TokenGT: 16).
        sign_flip: randomly flip eigenvector signs in training (TokenGT's augmentation).
        graph_token: prepend a learned graph (cls) token.
        max_nodes: refuse larger graphs (the eigendecomposition is dense).

    Inputs:
        graphs: a ``torch_geometric`` Batch (as :func:`graph_collate` makes), a list of ``Data``,
            networkx graphs or (2, e) ``edge_index`` tensors, or one ``Data``.

    Returns:
        tokens (b, [1 +] v + e, D) and mask (b, [1 +] v + e), v and e the largest node and edge counts.
    """

    def __init__(
            self,
            *,
            dim: int,
            node_features: int = 0,
            edge_features: int = 0,
            num_eigenvectors: int = 16,
            sign_flip: bool = True,
            graph_token: bool = True,
            max_nodes: int = 512,
    ) -> None:
        super().__init__(dim=dim)
        name = type(self).__name__
        check_range(f"{name}.node_features", node_features, low=0, high=1 << 16)
        check_range(f"{name}.edge_features", edge_features, low=0, high=1 << 16)
        check_range(f"{name}.num_eigenvectors", num_eigenvectors, low=1, high=1024)
        check_range(f"{name}.max_nodes", max_nodes, low=1, high=MAX_NODES)
        self.node_features, self.edge_features = node_features, edge_features
        self.num_eigenvectors, self.sign_flip, self.max_nodes = num_eigenvectors, sign_flip, max_nodes
        self.id_embed = nn.Linear(2 * num_eigenvectors, dim, bias=False)
        self.node_embed = nn.Linear(node_features, dim) if node_features else None
        self.edge_embed = nn.Linear(edge_features, dim) if edge_features else None
        self.type_embed = nn.Embedding(2, dim)  # 0 node, 1 edge
        nn.init.normal_(self.type_embed.weight, std=0.02)
        self.graph_token = ClsToken(dim) if graph_token else None
        self.num_prefix_tokens = int(graph_token)

    def forward(self, graphs: Any) -> TokenSequence:
        batch = _as_batch(graphs)
        device = self.type_embed.weight.device
        edge_index = batch.edge_index.to(device)
        node_batch = batch.batch.to(device) if batch.batch is not None else \
            torch.zeros(batch.num_nodes, dtype=torch.long, device=device)
        b = int(batch.num_graphs)
        ids, node_mask = laplacian_eigenvectors(edge_index, node_batch, b, self.num_eigenvectors,
                                                max_nodes=self.max_nodes)  # b v k, b v
        if self.training and self.sign_flip:
            ids = ids * (torch.randint(0, 2, (b, 1, ids.shape[-1]), device=device) * 2 - 1)
        ids = ids.to(self.id_embed.weight.dtype)
        node_ids = ids[node_mask]  # (total nodes, k) in batch order

        nodes = self.id_embed(torch.cat([ids, ids], dim=-1)) + self.type_embed.weight[0]  # b v d
        if self.node_embed is not None:
            x = _features(batch, "x", self.node_features, "node_features")
            embedded = self.node_embed(x.to(device, nodes.dtype))  # (total nodes, d) in batch order
            nodes = nodes + nodes.new_zeros(nodes.shape).masked_scatter(node_mask.unsqueeze(-1), embedded)

        edge_graph = node_batch[edge_index[0]]
        order = torch.argsort(edge_graph, stable=True)  # edges grouped by graph
        edge_counts = torch.bincount(edge_graph, minlength=b)
        e = int(edge_counts.max()) if edge_counts.numel() else 0
        edge_mask = torch.arange(e, device=device) < edge_counts.unsqueeze(1)  # b e
        src, dst = edge_index[:, order]
        edge_tokens = self.id_embed(torch.cat([node_ids[src], node_ids[dst]], dim=-1)) + self.type_embed.weight[1]
        if self.edge_embed is not None:
            edge_attr = _features(batch, "edge_attr", self.edge_features, "edge_features")
            edge_tokens = edge_tokens + self.edge_embed(edge_attr.to(device, edge_tokens.dtype)[order])
        edges = edge_tokens.new_zeros(b, e, self.dim).masked_scatter(edge_mask.unsqueeze(-1), edge_tokens)

        nodes = nodes * node_mask.unsqueeze(-1)  # padding tokens are zero (and masked)
        tokens = torch.cat([nodes, edges], dim=1)  # b (v + e) d
        mask = torch.cat([node_mask, edge_mask], dim=1)
        if self.graph_token is not None:
            tokens, mask = self.graph_token(tokens, mask)
        return self.sequence(tokens, mask)


def _as_batch(graphs: Any) -> Any:
    batch_cls = require("torch_geometric.data").Batch
    if isinstance(graphs, batch_cls):
        return graphs
    if isinstance(graphs, (list, tuple)):
        if not graphs:
            raise ValueError("graph tokenizer: the batch is empty")
        return graph_collate(graphs)
    return graph_collate([graphs])


def _features(batch: Any, field: str, width: int, option: str) -> torch.Tensor:
    values = getattr(batch, field, None)
    if values is None or values.dim() != 2 or values.shape[1] != width:
        got = "none" if values is None else f"shape {tuple(values.shape)}"
        raise ValueError(f"graph tokenizer: {option}={width} needs {field} of width {width}, got {got}")
    return values.float()


register_modality("graph", tokenizer=GraphTokenizer, reader=read_graph, suffixes=GRAPH_SUFFIXES,
                  collate=graph_collate)
