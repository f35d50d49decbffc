"""Check deploy/requirements.lock against pyproject.toml and against what this virtualenv installed.

    make lock                                 # regenerate the lock (uv pip compile --universal --generate-hashes)
    .venv/bin/python deploy/lock.py --check   # exit 1, naming each difference, if the lock and the venv disagree

The lock is the runtime closure of pyproject.toml `dependencies` (no extras: neither the test tools nor the
embedded Postgres), resolved for every platform (x86-64 and arm64 alike) with a SHA-256 hash for each file.
The Dockerfile installs it with `pip install --require-hashes`; `make venv` installs it the same way before
the project and its extras, so the tests run exactly the versions the image runs. The check fails when:
- a runtime dependency of pyproject.toml is not in the lock (the lock is stale: run `make lock`);
- an entry has no hash (the image's `--require-hashes` would refuse it);
- an entry that applies to this interpreter is missing from the venv, or installed at another version
  (the tests would not be testing what the image runs).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "deploy" / "requirements.lock"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    return canonical(re.split(r"[\s;<>=!~\[(]", req.strip(), maxsplit=1)[0])


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str
    hashes: tuple[str, ...]

    def applies(self) -> bool:
        """True when this entry is for the running interpreter and platform."""
        if not self.marker:
            return True
        from packaging.markers import Marker

        return Marker(self.marker).evaluate()


def read_lock(path: Path = LOCK) -> dict[str, Pin]:
    """{canonical name: Pin} from a pip requirements file in `uv pip compile --generate-hashes` form."""
    text = re.sub(r"\\\n", " ", path.read_text())  # join continuation lines
    pins = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        hashes = tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})", line))
        spec = re.sub(r"\s*--hash=\S+", "", line).strip()
        req, _, marker = spec.partition(";")
        name, sep, version = req.partition("==")
        if not sep:
            raise ValueError(f"{path.name}: not an exact pin: {line!r}")
        pins[canonical(name)] = Pin(canonical(name), version.strip(), marker.strip(), hashes)
    return pins


def declared(pyproject: Path = ROOT / "pyproject.toml") -> set[str]:
    import tomllib

    data = tomllib.loads(pyproject.read_text())
    return {requirement_name(r) for r in data["project"]["dependencies"]}


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def differences(pins: dict[str, Pin], runtime: set[str], installed=installed_version) -> list[str]:
    """Every way the lock disagrees with pyproject.toml or the installed packages; empty when they agree."""
    out = [f"{n}: a runtime dependency in pyproject.toml, not in the lock" for n in sorted(runtime - set(pins))]
    for pin in pins.values():
        if not pin.hashes:
            out.append(f"{pin.name}=={pin.version}: no --hash (pip --require-hashes refuses it)")
        if pin.applies():
            have = installed(pin.name)
            if have != pin.version:
                out.append(f"{pin.name}: locked {pin.version}, installed {have or 'nothing'}")
    return out


def main(argv: list[str]) -> int:
    if "--check" not in argv:
        print(__doc__)
        return 2
    problems = differences(read_lock(), declared())
    if problems:
        print("deploy/requirements.lock and this virtualenv differ (run `make lock`, then `make venv`):")
        print("\n".join(f"  {p}" for p in problems))
        return 1
    print(f"deploy/requirements.lock: {len(read_lock())} pins, hashed, installed here at those versions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
