import sys

import pytest

from metatransformer._optional import require


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` fail as if not installed
    with pytest.raises(ImportError, match=r'pip install "metatransformer\[tabular\]"'):
        require("pandas")


def test_unknown_module_suggests_pip():
    with pytest.raises(ImportError, match="pip install surely_not_a_module_xyz"):
        require("surely_not_a_module_xyz")


def test_present_module_is_returned():
    assert require("json").dumps([1]) == "[1]"
