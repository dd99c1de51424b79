"""Re-identification (``task: reid``): identity classification in training, retrieval among held-out
identities in validation and evaluation.

Training records (split ``train``) are samples labelled with their identity; the head classifies the
training identities (cross-entropy). The held-out identities come as ``query`` and ``gallery`` records (their
split; the label is the identity, unknown to the classifier). A record's embedding is what its modality's head
sees before its last linear layer (:meth:`~metatransformer.heads.Head.forward_features`: the head's LayerNorm,
then pooling — for ``pool: cls`` the cls token after that norm —, then the hidden layer of an MLP head),
L2-normalised. Queries are ranked against the gallery by cosine distance and scored by
:func:`~metatransformer.metrics.reid_scores` (Rank-k, mAP, mINP) in both directions, query → gallery and
gallery → query, as cross-modality re-ID reports them (query and gallery are the two sensors, or modalities,
each ranked against the other); every gallery item is ranked (no same-camera filtering: the query and gallery
sides are taken to come from different cameras).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
import torchmetrics
from torchmetrics.utilities import dim_zero_cat

from ..data2seq import TokenSequence
from ..embed import to_device
from ..metrics import reid_scores
from ..model import MetaTransformer
from .config import TrainConfig
from .data import ItemDataset, LabelEncoder, group_by_modality, make_loader
from .records import ROLES, Record

DIRECTIONS = {"query_to_gallery": ROLES, "gallery_to_query": ROLES[::-1]}


def retrieval_records(records: Sequence[Record]) -> list[Record]:
    """The query and gallery records of a re-identification run. Records in the val or test split are
    refused: without a role they could be neither ranked nor trained on."""
    unranked = sorted({r.split for r in records if r.split in ("val", "test")})
    if unranked:
        raise ValueError(f"task reid: records in split(s) {unranked} have no role; give the held-out identities "
                         f"the split {' or '.join(ROLES)}")
    ranked = [r for r in records if r.split in ROLES]
    counts = {role: sum(r.split == role for r in ranked) for role in ROLES}
    if ranked and not all(counts.values()):
        raise ValueError(f"task reid ranks query against gallery records: the data has "
                         f"{', '.join(f'{n} {role}' for role, n in counts.items())} records")
    return ranked


class RetrievalDataset(ItemDataset):
    """Query and gallery records of one modality → (item, (identity, role)) with targets (2,) int64: the
    identity's index among the held-out ``identities`` and the role (0 query, 1 gallery).

    Args:
        records: query and gallery records of one modality (split ``query`` or ``gallery``).
        tokenizer: the model's tokenizer for that modality (items are fitted to it, never augmented).
        identities: the label encoder of the held-out identities (of every retrieval set of the run).
        reader_options: keyword arguments of the modality's reader.
    """

    def __init__(self, records: Sequence[Record], tokenizer: torch.nn.Module, identities: LabelEncoder, *,
                 reader_options: dict[str, Any] | None = None) -> None:
        super().__init__(records, tokenizer, identities, reader_options=reader_options)
        self.targets = [torch.tensor([int(identity), ROLES.index(r.split)])
                        for identity, r in zip(self.targets, self.records)]


def retrieval_sets(config: TrainConfig, records: Sequence[Record], model: MetaTransformer
                   ) -> dict[str, RetrievalDataset]:
    """One :class:`RetrievalDataset` per modality of the query and gallery ``records`` (identities indexed
    over all of them, so that a query of one modality can match a gallery item of another)."""
    missing = sorted({r.modality for r in records} - set(model.tokenizers))
    if missing:
        raise ValueError(f"query/gallery records of modality {missing}, which no training record has")
    identities = LabelEncoder.fit("classification", [r.label for r in records])
    groups = group_by_modality(records)
    return {modality: RetrievalDataset(groups[modality], model.tokenizer(modality), identities,
                                       reader_options=config.reader_options.get(modality))
            for modality in model.tokenizers if modality in groups}  # the model's order, by which the module names them


def reid_embeddings(model: MetaTransformer, modality: str, features: TokenSequence) -> torch.Tensor:
    """(b, d) L2-normalised embeddings: the pooled features that ``modality``'s head feeds its last layer."""
    return F.normalize(model.heads[modality].forward_features(features).float(), dim=-1)


def retrieval_scores(embeddings: torch.Tensor, identities: torch.Tensor, roles: torch.Tensor
                     ) -> dict[str, dict[str, float]]:
    """Scores of each direction (``query_to_gallery``, ``gallery_to_query``) over L2-normalised embeddings.

    Args:
        embeddings: (n, d) L2-normalised.
        identities: (n,) identity indices.
        roles: (n,) 0 for query, 1 for gallery records.

    Returns:
        {direction: {"queries", "gallery", "rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}}.
    """
    results = {}
    for direction, (query_role, gallery_role) in DIRECTIONS.items():
        query, gallery = roles == ROLES.index(query_role), roles == ROLES.index(gallery_role)
        if not query.any() or not gallery.any():
            raise ValueError(f"retrieval needs query and gallery records; got {int(query.sum())} {query_role} and "
                             f"{int(gallery.sum())} {gallery_role} records")
        distances = 1 - embeddings[query] @ embeddings[gallery].T  # cosine distance
        results[direction] = {"queries": int(query.sum()), "gallery": int(gallery.sum()),
                              **reid_scores(distances, identities[query], identities[gallery])}
    return results


class RetrievalMetric(torchmetrics.Metric):
    """Validation retrieval: collects embeddings and their (identity, role) targets over the epoch (and the
    processes; the module leaves out the records a distributed sampler repeats), ranks them at :meth:`compute`
    in both directions.

    ``compute`` returns each score (lower-case: rank1, ..., map, minp) averaged over the directions and, as
    ``<direction>/<score>``, per direction.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, embeddings: torch.Tensor, targets: torch.Tensor) -> None:
        self.embeddings.append(embeddings.float())
        self.targets.append(targets.long())

    def compute(self) -> dict[str, torch.Tensor]:
        embeddings, targets = dim_zero_cat(self.embeddings), dim_zero_cat(self.targets)
        values: dict[str, float] = {}
        for direction, scores in retrieval_scores(embeddings, targets[:, 0], targets[:, 1]).items():
            for name, value in scores.items():
                if name not in ("queries", "gallery"):
                    values[f"{direction}/{name.lower()}"] = value
                    values[name.lower()] = values.get(name.lower(), 0.0) + value / len(DIRECTIONS)
        return {name: torch.tensor(value, device=embeddings.device) for name, value in values.items()}


@torch.inference_mode()
def evaluate_retrieval(model: MetaTransformer, config: TrainConfig, records: Sequence[Record], *, batch_size: int,
                       device: str = "cpu") -> dict[str, dict[str, float]]:
    """Scores of both directions over the query and gallery ``records`` (see :func:`retrieval_scores`).

    Args:
        model: a trained re-identification model (one head per modality).
        config: the run's recipe (its reader options).
        records: the query and gallery records, of any of the model's modalities.
        batch_size: items per forward pass.
        device: where the model runs.

    Returns:
        {direction: {"queries", "gallery", "rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}}.
    """
    model.eval().to(device)
    embeddings, targets = [], []
    for modality, dataset in retrieval_sets(config, records, model).items():
        for batch, target in make_loader(dataset, batch_size=batch_size, shuffle=False, seed=0):
            features = model.forward_features({modality: to_device(batch, torch.device(device))})
            embeddings.append(reid_embeddings(model, modality, features).cpu())
            targets.append(target)
    targets = torch.cat(targets)
    return retrieval_scores(torch.cat(embeddings), targets[:, 0], targets[:, 1])
