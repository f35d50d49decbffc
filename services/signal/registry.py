"""Model registry on disk: `<models_dir>/<version>/{model.pkl,metadata.json,...}` and a `current` file
naming the live version. It imports nothing that trains: `ensure_model` (train a bootstrap model when none
exists) lives in `services/signal/train.py`.

A pickled model is code. It is unpickled only after its sha256 matches `metadata.json`, from the very bytes
that were hashed; anything else is refused with `ModelRefused`, loudly.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from libs.common.errors import OperationalError
from services.signal.features import FeatureSpec
from services.signal.training import Classifier, predict_proba

MODEL_FILE = "model.pkl"
METADATA_FILE = "metadata.json"
CURRENT_FILE = "current"
AUDIT_FILE = "audit.jsonl"  # one JSON line per promotion, forced promotion, retirement, `current` cleared
REPO_ROOT = Path(__file__).resolve().parents[2]
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ModelRefused(OperationalError):
    """The artefact cannot be trusted (hash mismatch, missing or malformed metadata)."""


def models_dir(settings) -> Path:
    p = Path(settings.signal.models_dir)
    return p if p.is_absolute() else REPO_ROOT / p


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class LoadedModel:
    version: str
    path: Path
    pipeline: Classifier
    metadata: dict
    spec: FeatureSpec
    timeframe: str
    trained_at: datetime
    class_mean_returns: np.ndarray
    horizon: int
    fee_rate: float
    # the decision rule it was evaluated with (None: not recorded, the YAML's applies)
    probability_threshold: float | None = None
    min_expected_edge_bps: float | None = None
    symbols: frozenset[str] | None = None  # exchange ids (BTCUSDT) it was evaluated on; None = not recorded
    data_kind: str = "unknown"  # file | synthetic
    data_end: datetime | None = None  # open time of the newest bar it was trained on

    def age_h(self, now: datetime) -> float:
        return (now - self.trained_at).total_seconds() / 3600.0

    def data_age_h(self, at: datetime) -> float:
        """Hours from the newest bar it learned from to `at` (the bar being decided). Synthetic data says
        nothing about any market's time, so for it this is the age since training."""
        if self.data_kind != "file" or self.data_end is None:
            return self.age_h(at)
        return (at - self.data_end).total_seconds() / 3600.0

    def covers(self, symbol: str) -> bool:
        """Was it evaluated on `symbol` (ccxt or exchange form)? A synthetic model stands for no market in
        particular (paper only: live refuses it anyway)."""
        if self.symbols is None or "*" in self.symbols:
            return True
        return symbol.replace("/", "").upper() in self.symbols

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return predict_proba(self.pipeline, x)


def save_model(
    root: Path,
    version: str,
    pipeline: object,
    metadata: dict,
    extra_files: dict[str, bytes] | None = None,
    promote: bool = True,
) -> Path:
    """Write a new version atomically (temp dir, then rename) with the sha256 in its metadata."""
    if not _VERSION.match(version):
        raise ValueError(f"invalid model version {version!r}")
    root.mkdir(parents=True, exist_ok=True)
    blob = pickle.dumps(pipeline, protocol=pickle.HIGHEST_PROTOCOL)
    meta = {**metadata, "version": version, "sha256": sha256_bytes(blob), "artefact": MODEL_FILE}
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    (tmp / MODEL_FILE).write_bytes(blob)
    (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=1, default=str))
    for name, data in (extra_files or {}).items():
        (tmp / name).write_bytes(data)
    final = root / version
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if promote:
        set_current(root, version)
    return final


def set_current(root: Path, version: str) -> None:
    if not (root / version / METADATA_FILE).exists():
        raise ModelRefused(f"cannot promote {version}: no metadata in {root / version}")
    tmp = root / f".{CURRENT_FILE}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, root / CURRENT_FILE)


def clear_current(root: Path) -> None:
    """`current` names nothing: the signal service holds (every decision HOLD) until a model is promoted."""
    try:
        (root / CURRENT_FILE).unlink()
    except FileNotFoundError:
        pass


def read_metadata(root: Path, version: str) -> dict:
    if not _VERSION.match(version):
        raise ModelRefused(f"invalid model version {version!r}")
    try:
        return json.loads((root / version / METADATA_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelRefused(f"model {version}: metadata unreadable ({exc})") from None


def update_metadata(root: Path, version: str, **fields) -> dict:
    """Add or replace top-level fields of a version's metadata (atomically: a reader sees old or new).

    The sha256 covers the pickled model, not the metadata, so this never invalidates the artefact; it is
    used only for governance facts (a forced promotion, a retirement) that arise after training.
    """
    meta = {**read_metadata(root, version), **fields}
    tmp = root / version / f".{METADATA_FILE}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    tmp.write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, root / version / METADATA_FILE)
    return meta


def audit(root: Path, action: str, version: str | None, **detail) -> dict:
    """Append one line to `<models_dir>/audit.jsonl` (who, when, what, and the gate at that moment)."""
    import getpass

    try:
        actor = getpass.getuser()
    except (KeyError, OSError):
        actor = f"uid {os.getuid()}"
    entry = {
        # wall time by design: when a person or tool changed the registry
        "ts": datetime.now(UTC).isoformat(),
        "action": action,
        "version": version,
        "actor": actor,
        **detail,
    }
    root.mkdir(parents=True, exist_ok=True)
    with open(root / AUDIT_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, default=str) + "\n")
    return entry


def read_audit(root: Path) -> list[dict]:
    try:
        lines = (root / AUDIT_FILE).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"unreadable": line[:200]})
    return out


def list_versions(root: Path) -> list[str]:
    """Every version directory with a metadata file, oldest first (by training time, then name)."""
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        if d.is_dir() and _VERSION.match(d.name) and (d / METADATA_FILE).exists():
            try:
                at = str(json.loads((d / METADATA_FILE).read_text()).get("trained_at", ""))
            except (OSError, ValueError):
                at = ""
            found.append((at, d.name))
    return [name for _, name in sorted(found)]


def read_current(root: Path) -> str | None:
    try:
        v = (root / CURRENT_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    if not _VERSION.match(v):
        raise ModelRefused(f"{root / CURRENT_FILE} does not name a valid version: {v[:80]!r}")
    return v


def load_model(root: Path, version: str) -> LoadedModel:
    """Verify the artefact's sha256 against its metadata, then unpickle those same bytes."""
    d = root / version
    try:
        meta = json.loads((d / METADATA_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelRefused(f"model {version}: metadata unreadable ({exc})") from None
    try:
        blob = (d / meta.get("artefact", MODEL_FILE)).read_bytes()
    except OSError as exc:
        raise ModelRefused(f"model {version}: artefact unreadable ({exc})") from None
    expected, actual = str(meta.get("sha256", "")), sha256_bytes(blob)
    if not expected or expected != actual:
        raise ModelRefused(
            f"model {version}: sha256 mismatch (metadata {expected[:16] or 'missing'}..., "
            f"file {actual[:16]}...); refusing to unpickle it"
        )
    try:
        pipeline = pickle.loads(blob)  # noqa: S301 - verified against the registry's hash just above
        spec = FeatureSpec.from_dict(meta["features"]["spec"])
        if list(spec.names) != list(meta["features"]["names"]):
            raise ValueError("feature names do not match the feature spec")
        decision = meta.get("decision") or {}
        symbols = meta.get("symbols")
        span_to = (meta.get("data_span") or {}).get("to")
        data_end = datetime.fromisoformat(span_to) if span_to else None
        if data_end is not None and data_end.tzinfo is None:
            data_end = data_end.replace(tzinfo=UTC)
        threshold, min_edge = decision.get("probability_threshold"), decision.get("min_expected_edge_bps")
        return LoadedModel(
            version=version,
            path=d,
            pipeline=pipeline,
            metadata=meta,
            spec=spec,
            timeframe=meta["timeframe"],
            trained_at=datetime.fromisoformat(meta["trained_at"]),
            class_mean_returns=np.asarray(meta["label"]["class_mean_returns"], dtype=np.float64),
            horizon=int(meta["label"]["horizon_bars"]),
            fee_rate=float(meta["label"]["fee_rate_per_side"]),
            probability_threshold=None if threshold is None else float(threshold),
            min_expected_edge_bps=None if min_edge is None else float(min_edge),
            symbols=None if symbols is None else frozenset(str(x).replace("/", "").upper() for x in symbols),
            data_kind=str((meta.get("data") or {}).get("kind", "unknown")),
            data_end=data_end,
        )
    except (KeyError, ValueError, TypeError, pickle.UnpicklingError) as exc:
        raise ModelRefused(
            f"model {version}: metadata or artefact malformed ({type(exc).__name__}: {exc})"
        ) from None


def load_current(root: Path) -> LoadedModel | None:
    """The live model, or None when no `current` exists. Raises ModelRefused when it cannot be trusted."""
    version = read_current(root)
    return None if version is None else load_model(root, version)


def utc_now() -> datetime:
    """Wall time by design: for the registry's tools (promote, retire), which run outside any service runtime."""
    return datetime.now(UTC)
