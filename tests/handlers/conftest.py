"""Tests of the Flask views.

No __init__.py in this folder: it would make pytest import it as a package named `handlers` and
shadow the real one (pyproject's `pythonpath = ["."]` lets the real package win over this folder).
Test file names here must therefore be unique across the whole suite.
"""
