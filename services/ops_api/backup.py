"""Backups: `pg_dump` of the Postgres state + the model registry pointer, with a checksum manifest; restore.

Pure part: names, retention, manifest checks. Shell part: finding a `pg_dump` whose major version is at
least the server's (pg_dump refuses to dump a newer server), running it and `pg_restore`.
Layout: `<backup dir>/<YYYYmmddTHHMMSSZ>/{db.dump, models_current, manifest.json}`; a backup being written
lives in `<name>.partial` and is renamed when complete, so a listed directory is always whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from libs.common.settings import mask_url

NAME_RE = re.compile(r"^\d{8}T\d{6}(\d{6})?Z$")
MANIFEST = "manifest.json"
DUMP = "db.dump"
MODELS_POINTER = "models_current"


# -- pure core --------------------------------------------------------------------------------
def backup_name(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def to_prune(names: list[str], retention: int) -> list[str]:
    """Complete backups beyond the newest `retention` (names sort by time)."""
    done = sorted(n for n in names if NAME_RE.match(n))
    return done[:-retention] if retention > 0 and len(done) > retention else ([] if retention > 0 else done)


def manifest_problems(manifest: dict, actual: dict[str, str]) -> list[str]:
    """Differences between the manifest's checksums and the files' actual checksums (empty = intact)."""
    out = []
    for name, meta in manifest.get("files", {}).items():
        got = actual.get(name)
        if got is None:
            out.append(f"{name}: missing")
        elif got != meta.get("sha256"):
            out.append(f"{name}: checksum mismatch")
    if DUMP not in manifest.get("files", {}):
        out.append(f"{DUMP}: not in manifest")
    return out


def major_of(version_text: str) -> int | None:
    """`pg_dump (PostgreSQL) 16.2` -> 16."""
    m = re.search(r"\(PostgreSQL\)\s+(\d+)", version_text) or re.search(r"(\d+)(?:\.\d+)", version_text)
    return int(m.group(1)) if m else None


# -- shell ------------------------------------------------------------------------------------
class BackupError(Exception):
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _candidates(tool: str) -> list[str]:
    out = []
    env = os.environ.get(f"BNML_{tool.upper()}")
    if env:
        out.append(env)
    try:
        import pgserver._commands as cmds

        out.append(str(Path(cmds.POSTGRES_BIN_PATH) / tool))
    except Exception:
        pass
    found = shutil.which(tool)
    if found:
        out.append(found)
    return [c for c in dict.fromkeys(out) if Path(c).exists()]


def tool_version(path: str) -> str:
    res = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    return res.stdout.strip()


def find_tool(tool: str, server_major: int) -> tuple[str, str]:
    """The first `pg_dump`/`pg_restore` whose major version is >= the server's (embedded, then PATH)."""
    seen = []
    for c in _candidates(tool):
        try:
            v = tool_version(c)
        except Exception as exc:
            seen.append(f"{c}: {exc}")
            continue
        major = major_of(v)
        seen.append(f"{c}: {v}")
        if major is not None and major >= server_major:
            return c, v
    raise BackupError(
        f"no {tool} for PostgreSQL server {server_major} (found: {'; '.join(seen) or 'none'}); "
        f"set BNML_{tool.upper()} to a {tool} >= {server_major}"
    )


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password (for argv) and the env that carries the password (PGPASSWORD)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**{k: str(v) for k, v in params.items()}), env


def server_major(url: str) -> tuple[int, str]:
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        num = int(_scalar(conn.execute("SHOW server_version_num").fetchone()))
        text = str(_scalar(conn.execute("SHOW server_version").fetchone()))
    return num // 10000, text


def _scalar(row: tuple[Any, ...] | None) -> Any:
    """The one value of a one-row, one-column answer (a missing row is a server that did not answer it)."""
    if row is None:
        raise BackupError("the server returned no row")
    return row[0]


@dataclass
class BackupResult:
    ok: bool
    path: Path | None
    size_bytes: int
    error: str
    started_at: datetime
    finished_at: datetime
    pruned: list[str]


def make_backup(
    url: str,
    backup_dir: Path,
    models_dir: Path,
    retention: int,
    *,
    timeout_s: float = 600.0,
    now: datetime | None = None,
) -> BackupResult:
    """Dump the database and the model pointer into a new backup directory, then prune. Never raises."""
    # wall time by design: a backup's name and timestamps say when the machine wrote it (never a data clock)
    started = now or datetime.now(UTC)
    name = backup_name(started)
    partial = backup_dir / f"{name}.partial"
    final = backup_dir / name
    try:
        backup_dir.mkdir(parents=True, exist_ok=True)
        partial.mkdir()
        major, server_version = server_major(url)
        pg_dump, dump_version = find_tool("pg_dump", major)
        conninfo, env = _split_url(url)
        res = subprocess.run(
            [pg_dump, "--format=custom", "--no-owner", "--file", str(partial / DUMP), "--dbname", conninfo],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s,
        )
        if res.returncode != 0:
            raise BackupError(f"pg_dump failed ({res.returncode}): {res.stderr.strip()[-500:]}")
        pointer = _copy_models_pointer(models_dir, partial / MODELS_POINTER)
        files: dict[str, dict[str, Any]] = {}
        for f in sorted(partial.iterdir()):
            files[f.name] = {"sha256": sha256_file(f), "size": f.stat().st_size}
        manifest = {
            "created_at": started.isoformat(),
            "database": mask_url(url),
            "server_version": server_version,
            "pg_dump": dump_version,
            "format": "pg_dump custom (restore with `bnml restore <dir>`)",
            "models_current": pointer,
            "files": files,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        partial.rename(final)
        size = sum(m["size"] for m in files.values())
        pruned = prune(backup_dir, retention)
        return BackupResult(True, final, size, "", started, datetime.now(UTC), pruned)
    except Exception as exc:
        shutil.rmtree(partial, ignore_errors=True)
        err = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
        return BackupResult(False, None, 0, mask_url(err)[:1000], started, datetime.now(UTC), [])


def _copy_models_pointer(models_dir: Path, dest: Path) -> str | None:
    """`artifacts/models/current` is a symlink or a file naming the live model; keep what it names."""
    current = models_dir / "current"
    if current.is_symlink():
        value = os.readlink(current)
    elif current.is_file():
        value = current.read_text().strip()
    elif current.is_dir():
        value = str(current.resolve().name)
    else:
        value = None
    dest.write_text((value or "") + "\n")
    return value


def prune(backup_dir: Path, retention: int) -> list[str]:
    names = [p.name for p in backup_dir.iterdir() if p.is_dir() and (p / MANIFEST).exists()]
    doomed = to_prune(names, retention)
    for n in doomed:
        shutil.rmtree(backup_dir / n, ignore_errors=True)
    # leftovers of interrupted backups (older than an hour)
    for p in backup_dir.glob("*.partial"):
        if time.time() - p.stat().st_mtime > 3600:  # wall time by design: compared with a file's mtime
            shutil.rmtree(p, ignore_errors=True)
    return doomed


def verify(backup: Path) -> dict:
    manifest_path = backup / MANIFEST
    if not manifest_path.exists():
        raise BackupError(f"{backup}: no {MANIFEST}; not a complete backup")
    manifest = json.loads(manifest_path.read_text())
    actual = {f.name: sha256_file(f) for f in backup.iterdir() if f.name != MANIFEST}
    problems = manifest_problems(manifest, actual)
    if problems:
        raise BackupError(f"{backup}: " + "; ".join(problems))
    return manifest


def restore(backup: Path, url: str, *, timeout_s: float = 600.0) -> dict:
    """Restore a verified backup into an empty database (refuses one that has tables)."""
    import psycopg

    manifest = verify(backup)
    with psycopg.connect(url, connect_timeout=5) as conn:
        n = _scalar(
            conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        )
    if n:
        raise BackupError(f"target database has {n} table(s); restore only into an empty database")
    major, _ = server_major(url)
    pg_restore, version = find_tool("pg_restore", major)
    conninfo, env = _split_url(url)
    res = subprocess.run(
        [
            pg_restore,
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--dbname",
            conninfo,
            str(backup / DUMP),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
    )
    if res.returncode != 0:
        raise BackupError(f"pg_restore failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    return {"restored": str(backup), "pg_restore": version, "models_current": manifest.get("models_current")}
