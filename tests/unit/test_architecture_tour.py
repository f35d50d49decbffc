"""docs/architecture.md names real code: every `path.py:Name[.attr]` it writes imports and resolves, and
every plain `path` it names is a tracked file or folder. A rename that leaves the tour behind fails here."""

from __future__ import annotations

import importlib
import re

from tests.helpers import ROOT

TOUR = ROOT / "docs" / "architecture.md"
QUALIFIED = re.compile(r"`([a-z_/]+)\.py:([A-Za-z_][A-Za-z0-9_.]*)`")
PATH = re.compile(r"`((?:libs|services|bnml|scripts|backtest|tests|docs)/[A-Za-z0-9_./-]+)`")


def _resolve(module_path: str, dotted: str) -> object:
    obj: object = importlib.import_module(module_path.replace("/", "."))
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_qualified_name_in_the_tour_exists():
    text = TOUR.read_text()
    refs = QUALIFIED.findall(text)
    assert len(refs) >= 40, "the tour names its code as `path.py:Name`"
    missing = []
    for module_path, dotted in refs:
        try:
            _resolve(module_path, dotted)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{module_path}.py:{dotted} ({type(exc).__name__}: {exc})")
    assert not missing, "docs/architecture.md names code that does not exist:\n" + "\n".join(missing)


def test_every_path_in_the_tour_exists():
    text = TOUR.read_text()
    paths = PATH.findall(QUALIFIED.sub("", text))
    assert paths
    missing = [p for p in paths if not (ROOT / p.rstrip("/")).exists()]
    assert not missing, "docs/architecture.md names paths that do not exist:\n" + "\n".join(missing)


def test_the_check_can_fail():
    try:
        _resolve("services/execution/core", "client_order_id_that_is_not_there")
    except AttributeError:
        return
    raise AssertionError("a missing name resolved")
