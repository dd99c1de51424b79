"""Lazy imports of optional dependencies, with an error that names the extra to install."""
from __future__ import annotations

import importlib
from types import ModuleType

# module name -> (pip extra, distribution name)
_EXTRAS: dict[str, tuple[str, str]] = {
    "torchaudio": ("audio", "torchaudio"),
    "soundfile": ("audio", "soundfile"),
    "av": ("video", "av"),
    "plyfile": ("point", "plyfile"),
    "trimesh": ("point", "trimesh"),
    "torch_geometric": ("graph", "torch_geometric"),
    "networkx": ("graph", "networkx"),
    "scipy": ("graph", "scipy"),
    "transformers": ("text", "transformers"),
    "tokenizers": ("text", "tokenizers"),
    "pandas": ("tabular", "pandas"),
    "pyarrow": ("tabular", "pyarrow"),
    "pydicom": ("medical", "pydicom"),
    "h5py": ("hyperspectral", "h5py"),
    "spectral": ("hyperspectral", "spectral"),
    "tqdm": ("train", "tqdm"),
    "torchmetrics": ("train", "torchmetrics"),
    "lightning": ("train", "lightning"),
    "matplotlib": ("train", "matplotlib"),
    "yaml": ("train", "pyyaml"),
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that says which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra, dist = _EXTRAS.get(module.split(".")[0], (None, module))
        hint = f'pip install "metatransformer[{extra}]"' if extra else f"pip install {dist}"
        raise ImportError(f"{module!r} is needed for this feature but is not installed; run: {hint}") from err
