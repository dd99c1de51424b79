"""Name registries: one class serves modalities, heads, encoder presets and pretrained weights.

The modality registry lives here, below both ``datasets`` (readers) and ``data2seq`` (tokenizers), so
that each layer can look a modality up without importing the other.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, Literal, Sequence, TypeVar

from .batching import stack_collate

T = TypeVar("T")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def normalize_name(name: str) -> str:
    """Registry key of a user spelling: case-insensitive, with ``-``, spaces and ``_`` treated alike."""
    if not isinstance(name, str):
        raise TypeError(f"a registry name must be a string, got {type(name).__name__}")
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


class Registry(Generic[T]):
    """Named entries with aliases; names are validated and collisions refused.

    Args:
        kind: what the entries are (``"modality"``, ``"head"``...), used in error messages.

    Example:
        >>> HEADS = Registry("head")
        >>> HEADS.register("linear", LinearHead, aliases=("fc",))
        >>> HEADS.get("FC") is LinearHead
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, entry: T, *, aliases: Sequence[str] = ()) -> T:
        """Add ``entry`` under ``name`` and ``aliases``.

        Raises:
            ValueError: the name is malformed, or it or an alias is already taken (as a name or an alias).
        """
        canonical = normalize_name(name)
        if not _NAME.match(canonical):
            raise ValueError(f"{self.kind} name {name!r} must start with a letter and use letters, digits and _")
        if canonical in self._entries and self._entries[canonical] is not entry:
            raise ValueError(f"{self.kind} {canonical!r} is already registered")
        if canonical in self._aliases:
            raise ValueError(f"{self.kind} name {canonical!r} is already an alias of {self._aliases[canonical]!r}")
        keys = [normalize_name(alias) for alias in aliases]
        for key in keys:
            owner = key if key in self._entries else self._aliases.get(key)
            if owner is not None and owner != canonical:
                raise ValueError(f"{self.kind} alias {key!r} is already taken by {owner!r}")
            if not _NAME.match(key):
                raise ValueError(f"{self.kind} alias {key!r} must start with a letter and use letters, digits and _")
        self._entries[canonical] = entry
        self._aliases.update(dict.fromkeys(keys, canonical))
        return entry

    def decorator(self, name: str, *, aliases: Sequence[str] = ()) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object."""
        return lambda entry: self.register(name, entry, aliases=aliases)

    def canonical(self, name: str) -> str:
        """The registered name for a spelling or alias; ValueError listing the known names otherwise."""
        key = normalize_name(name)
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return key

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    __getitem__ = get

    def names(self) -> list[str]:
        return sorted(self._entries)

    def aliases_of(self, name: str) -> list[str]:
        canonical = self.canonical(name)
        return sorted(alias for alias, owner in self._aliases.items() if owner == canonical)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._aliases.get(normalize_name(name), normalize_name(name)) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def unregister(self, name: str) -> T:
        """Remove an entry and its aliases (tests and plugins that re-register)."""
        canonical = self.canonical(name)
        self._aliases = {a: owner for a, owner in self._aliases.items() if owner != canonical}
        return self._entries.pop(canonical)


@dataclass(frozen=True)
class ModalitySpec:
    """Everything the library needs to know about one modality; one registry entry.

    Attributes:
        name: canonical modality name.
        tokenizer: the :class:`~metatransformer.data2seq.Tokenizer` subclass.
        reader: ``reader(path, **options) -> item``: one file to one item (no parameters, raises
            :class:`~metatransformer.datasets.ReadError`), or None when the modality has no file format.
        suffixes: lower-case file suffixes the reader accepts (``".wav"``): files collected from folders
            for this modality, and the modality inferred for a file (the first registered claimant of
            a suffix wins, so ``.png`` reads as ``image``; infrared and X-ray files need ``modality=``).
        collate: ``collate(items) -> batch``: a list of items (after ``transform``) to the batch the
            tokenizer's ``forward`` takes; variable-length items are padded and masked.
        transform: ``transform(tokenizer) -> (item -> item)``: the default preprocessing that makes a
            read item fit a tokenizer (resize, normalise...), built from the tokenizer's options; None
            when items need none.
        split: ``split(item) -> [item, ...]`` for files that hold several samples (a table's rows), applied
            after ``transform``; each sample gets its own embedding (``path#i``). None: one sample per file.
        augment: ``augment(tokenizer, **options) -> (item -> item)``: the training counterpart of
            ``transform``, used instead of it on the training items of a run with augmentation: a read item
            to a randomly augmented item that fits the tokenizer. None: the modality trains on ``transform``.
        mixing: the batch mixing its classification batches take: ``"cutmix"`` (mixup, and cutmix boxes over
            the batch tensor's last two axes: image-like), ``"mixup"`` (whole-sample convex combinations only)
            or None (discrete or unordered inputs: mixing is refused). A batch is a tensor or a
            ``(values, mask)`` pair (:class:`~metatransformer.batching.Padded` and the like).
        views: ``views(tokenizer, temporal, spatial, **reader_options) -> (path -> [item, ...])``: the
            test-time views of one file (clips × crops), each fitted as ``transform`` fits an item; one
            temporal and one spatial view is the single view. None: the modality has no multi-view testing.
    """

    name: str
    tokenizer: type
    reader: Callable[..., Any] | None = None
    suffixes: tuple[str, ...] = ()
    collate: Callable[[list[Any]], Any] = stack_collate
    transform: Callable[[Any], Callable[[Any], Any]] | None = None
    split: Callable[[Any], list[Any]] | None = None
    augment: Callable[..., Callable[[Any], Any]] | None = None
    mixing: Literal["cutmix", "mixup"] | None = None
    views: Callable[..., Callable[[Any], list[Any]]] | None = None


MODALITIES: Registry[ModalitySpec] = Registry("modality")
_SUFFIX_OWNERS: dict[str, str] = {}  # suffix -> the first modality that claimed it


def register_modality(
        name: str,
        *,
        tokenizer: type,
        reader: Callable[..., Any] | None = None,
        suffixes: Sequence[str] = (),
        collate: Callable[[list[Any]], Any] = stack_collate,
        transform: Callable[[Any], Callable[[Any], Any]] | None = None,
        split: Callable[[Any], list[Any]] | None = None,
        augment: Callable[..., Callable[[Any], Any]] | None = None,
        mixing: Literal["cutmix", "mixup"] | None = None,
        views: Callable[..., Callable[[Any], list[Any]]] | None = None,
        aliases: Sequence[str] = (),
) -> ModalitySpec:
    """Register a modality: its tokenizer class, reader, file suffixes, collate, default preprocessing,
    training augmentation, batch mixing and test-time views (see :class:`ModalitySpec` for each part).

    This is the only place a modality is made known; ``Data2Seq``, ``read``, ``embed``, the CLI and
    ``create_model`` all look it up here. ``collate`` defaults to stacking same-shape items;
    variable-length modalities pass :func:`~metatransformer.batching.pad_collate` or their own.

    Raises:
        ValueError: the name or an alias is already taken by another modality.
    """
    canonical = normalize_name(name)
    if mixing not in (None, "cutmix", "mixup"):
        raise ValueError(f"mixing must be 'cutmix', 'mixup' or None, got {mixing!r}")
    suffixes = tuple(s.lower() if s.startswith(".") else f".{s.lower()}" for s in suffixes)
    spec = ModalitySpec(name=canonical, tokenizer=tokenizer, reader=reader, suffixes=suffixes,
                        collate=collate, transform=transform, split=split, augment=augment, mixing=mixing,
                        views=views)
    MODALITIES.register(canonical, spec, aliases=aliases)
    for suffix in suffixes:
        _SUFFIX_OWNERS.setdefault(suffix, canonical)
    tokenizer.modality = canonical
    return spec


def get_modality(name: str) -> ModalitySpec:
    """The registry entry for a modality name or alias (``"X-ray"``, ``"thermal"``...)."""
    return MODALITIES.get(name)


def canonical_modality(name: str) -> str:
    """The registered name for ``name`` (``"X-ray"`` -> ``"xray"``, ``"thermal"`` -> ``"infrared"``...)."""
    return MODALITIES.canonical(name)


def list_modalities() -> list[str]:
    """Registered modality names."""
    return MODALITIES.names()


def modality_for_suffix(suffix: str) -> str | None:
    """The modality a file suffix infers (``".wav"`` -> ``"audio"``): its first registered claimant, or None."""
    owner = _SUFFIX_OWNERS.get(suffix.lower())
    return owner if owner in MODALITIES else None
