"""The one on-disk format the library writes: a directory with ``config.json`` and ``model.safetensors``.

Encoders, whole models and merged pathway exports all use it. Files are written to a temporary name
and renamed, so a crash never leaves a half-written checkpoint behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._version import __version__

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SCHEMA_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""


def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """Call ``write(temporary_path)`` in ``path``'s folder, then rename it to ``path`` (never half-written)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_checkpoint_dir(directory: str | os.PathLike, config: Mapping[str, Any],
                         state_dict: Mapping[str, torch.Tensor]) -> Path:
    """Write ``config`` (a JSON object; the schema version is added) and the tensors, atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in state_dict.items()}
    atomic_write(directory / WEIGHTS_NAME,
                  lambda tmp: save_file(tensors, tmp, metadata={"format": "pt", "library": "metatransformer"}))
    document = {"schema_version": SCHEMA_VERSION, "metatransformer_version": __version__, **config}
    text = json.dumps(document, indent=2) + "\n"
    atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
    return directory


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG_NAME).is_file()


def read_checkpoint_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The config object of a checkpoint directory, its schema version checked and removed."""
    directory = Path(directory)
    config_file, weights_file = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for required in (config_file, weights_file):
        if not required.is_file():
            raise CheckpointError(f"{directory}: {required.name} is missing (expected {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_file}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file}: expected a JSON object, got {type(config).__name__}")
    version = config.pop("schema_version", None)
    if version != SCHEMA_VERSION:
        raise CheckpointError(f"{config_file}: schema_version {version!r} is not supported (this library reads "
                              f"{SCHEMA_VERSION}); re-save it with a matching metatransformer version")
    config.pop("metatransformer_version", None)
    return config


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err


def read_checkpoint_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    return read_safetensors(Path(directory) / WEIGHTS_NAME)
