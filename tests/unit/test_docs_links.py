"""The docs a reader is sent to exist in the repository: every `docs/<name>.md` named by a tracked file is
there, and nothing sends readers to the design, interfaces or style notes that lived outside the clone."""

from __future__ import annotations

import re
import subprocess

from tests.helpers import ROOT

DOC_REF = re.compile(r"\bdocs/([A-Za-z0-9_.-]+\.md)\b")
# bare names of notes that were never part of the repository (built from parts: this file must not match)
OUTSIDE = re.compile(
    r"(?<![/\w])(" + "|".join(n + r"\.md" for n in ("DESIGN", "INTERFACES", "STYLE")) + r")\b"
)


def _tracked_text() -> dict[str, str]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    out = {}
    for name in filter(None, names.split("\0")):
        path = ROOT / name
        if path.is_file() and path.suffix in (".md", ".py", ".yaml", ".yml", ".conf", ".toml", ".txt", ""):
            out[name] = path.read_text(errors="ignore")
    return out


def test_every_doc_a_file_points_to_exists():
    missing = sorted(
        {
            f"{name}: docs/{doc}"
            for name, text in _tracked_text().items()
            for doc in DOC_REF.findall(text)
            if not (ROOT / "docs" / doc).is_file()
        }
    )
    assert not missing, "pointers to docs that are not in the repository:\n" + "\n".join(missing)


def test_no_file_sends_readers_to_notes_outside_the_repository():
    offenders = sorted(
        f"{name}: {m}" for name, text in _tracked_text().items() for m in OUTSIDE.findall(text)
    )
    assert not offenders, "\n".join(offenders)


def test_design_and_interfaces_are_in_the_repository():
    for doc in ("design.md", "interfaces.md"):
        assert (ROOT / "docs" / doc).is_file(), doc
