"""Shim for tools and users that still run ``python setup.py develop``; configuration lives in pyproject.toml."""
from setuptools import setup

setup()
