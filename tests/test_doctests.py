"""The docstring examples of every bayescale module run and print what they show.

Examples that fit a model or read files outside the package are marked ``# doctest: +SKIP``;
the others (about 120, mostly the data checks, laws, planning and point fits) run here, so an
example whose output drifts from the code fails the suite instead of misleading a reader.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import bayescale

SUBMODULES = pkgutil.walk_packages(bayescale.__path__, "bayescale.")
MODULES = ["bayescale", *sorted(m.name for m in SUBMODULES if not m.name.endswith("__main__"))]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    runner = doctest.DocTestRunner(optionflags=flags)
    report: list[str] = []
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


def test_the_examples_are_found():
    """The finder sees the package's examples (a broken walk would pass vacuously)."""
    examples = sum(
        len(t.examples)
        for name in MODULES
        for t in doctest.DocTestFinder().find(importlib.import_module(name), name)
    )
    assert examples >= 100, examples
