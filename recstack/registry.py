"""The model registry: versions with manifests, and stages with history.

Layout under any fsspec URI (a local path, `s3://...`, `memory://...`):

    REG/versions/<version>/manifest.json    # written last: its presence marks a
    REG/versions/<version>/<artifacts>      # complete version
    REG/stages.json                         # {"prod": [{"version", "at", "by", "note"}, ...]}

A KServe `storageUri` points at `REG/versions/<version>`. Each stage keeps its
whole history (newest last), so a rollback is one step back: each one undoes the
newest promotion not yet undone.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import fsspec
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict, Field

# A Literal, so that the CLI's --stage options take exactly these values.
Stage = Literal["dev", "staging", "prod"]
STAGES: tuple[str, ...] = get_args(Stage)
MANIFEST = "manifest.json"
# What `recstack train` writes beside the manifest for batch answers.
RECS_FILE = "recommendations.parquet"  # each known user's ranked list
FALLBACK_FILE = "fallback.parquet"  # the cold-start (trending) list
# The Feast registry the version was trained against (its serialized proto): serving
# reads its feature views from here, so a version directory alone can be served.
FEATURE_REGISTRY_FILE = "feature_registry.pb"
STAGES_FILE = "stages.json"
MATCHES_SHOWN = 10  # versions an ambiguous prefix lists
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RegistryError(LookupError):
    pass


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    """Unique, sortable by creation: `vYYYYMMDD-HHMMSS-<suffix>`."""
    created_at: datetime
    code_revision: str
    """`git describe` of the code that trained it, or `unknown` outside a checkout."""
    data_snapshot: dict[str, Any]
    """What it was trained on: data directory, event count, time range, file digests."""
    feature_service: str
    """The Feast feature service its features come from."""
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[str] = Field(default_factory=list)
    """Paths relative to the version directory."""


class StageEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    at: datetime
    by: str
    note: str = ""
    action: Literal["promote", "rollback"] = "promote"
    """A rollback undoes the newest promotion not yet undone (see `line`)."""

    def undoes(self) -> bool:
        # Histories written before `action` existed mark a rollback in the note only.
        return self.action == "rollback" or self.note.startswith("rollback from ")


def line(entries: list[StageEntry]) -> list[str]:
    """The versions a stage stands on, oldest first: each promotion adds one, each
    rollback takes the newest off. Its last is the stage's current version."""
    versions: list[str] = []
    for entry in entries:
        if entry.undoes():
            versions = versions[:-1]
        else:
            versions.append(entry.version)
    return versions


def new_version_id(now: datetime | None = None, suffix: str = "") -> str:
    now = now or datetime.now(UTC)
    return f"v{now:%Y%m%d-%H%M%S}" + (f"-{suffix}" if suffix else "")


def code_revision(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"],
                             cwd=cwd or Path(__file__).parent, capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


class Registry:
    def __init__(self, uri: str | Path) -> None:
        self.uri = str(uri).rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.uri)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def version_uri(self, version: str) -> str:
        """Where the version lives, in the registry's own scheme (a KServe storageUri)."""
        return f"{self.uri}/versions/{version}"

    # versions -------------------------------------------------------------------------

    def publish(self, manifest: Manifest, artifacts: Path) -> str:
        """Copy `artifacts` (a local directory) into a new version, manifest last."""
        if not _VERSION.match(manifest.version):
            raise RegistryError(f"invalid version id {manifest.version!r}")
        target = self._path("versions", manifest.version)
        if self.fs.exists(f"{target}/{MANIFEST}"):
            raise RegistryError(f"version {manifest.version} already exists in {self.uri}")
        files = sorted(p for p in artifacts.rglob("*") if p.is_file())
        manifest = manifest.model_copy(update={
            "artifacts": [str(p.relative_to(artifacts)) for p in files]})
        for path in files:
            remote = f"{target}/{path.relative_to(artifacts).as_posix()}"
            self.fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(path), remote)
        self._write_json(f"{target}/{MANIFEST}", manifest.model_dump(mode="json"))
        return manifest.version

    def _names(self) -> list[str]:
        """The ids of the complete versions, sorted by id."""
        base = self._path("versions")
        if not self.fs.exists(base):
            return []
        names = (str(entry).rstrip("/").rsplit("/", 1)[-1]
                 for entry in self.fs.ls(base, detail=False))
        return sorted(n for n in names if self.fs.exists(f"{base}/{n}/{MANIFEST}"))

    def versions(self) -> list[Manifest]:
        """Complete versions, oldest first."""
        manifests = [self._load(name) for name in self._names()]
        return sorted(manifests, key=lambda m: (m.created_at, m.version))

    def find(self, ref: str) -> str:
        """The id of the version that `ref` names: the whole id, or a prefix that only
        one version's id starts with (ids are long; `v20261206-2148` is enough)."""
        if not _VERSION.match(ref):  # also keeps `..` and `/` out of the paths
            raise RegistryError(f"invalid version id {ref!r}")
        if self.fs.exists(self._path("versions", ref, MANIFEST)):
            return ref
        matches = [name for name in self._names() if name.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(matches[:MATCHES_SHOWN]) + (
                f" and {len(matches) - MATCHES_SHOWN} more"
                if len(matches) > MATCHES_SHOWN else "")
            raise RegistryError(f"{ref!r} is the start of {len(matches)} versions in "
                                f"{self.uri}: {shown}; give more of the id")
        known = ", ".join(m.version for m in self.versions()[-5:])
        raise RegistryError(f"no version {ref!r} in {self.uri}"
                            + (f" (latest: {known})" if known else ""))

    def manifest(self, version: str) -> Manifest:
        """The manifest of a version named by its id or a unique prefix of it."""
        return self._load(self.find(version))

    def _load(self, version: str) -> Manifest:
        return Manifest.model_validate(self._read_json(self._path("versions", version,
                                                                  MANIFEST)))

    def latest(self) -> Manifest:
        versions = self.versions()
        if not versions:
            raise RegistryError(f"{self.uri} has no versions yet: run `recstack train`")
        return versions[-1]

    def fetch(self, version: str, cache: Path | None = None) -> Path:
        """A local directory with the version's files (the directory itself when local)."""
        version = self.find(version)
        source = self._path("versions", version)
        if isinstance(self.fs, LocalFileSystem):
            return Path(source)
        target = (cache or Path(tempfile.gettempdir()) / "recstack-models") / version
        if not (target / MANIFEST).exists():
            # Into a fresh path that does not exist yet: fsspec copies a directory *into*
            # an existing target, one level too deep.
            staging = Path(tempfile.mkdtemp(prefix=f"{version}-")) / version
            self.fs.get(f"{source}/", f"{staging}/", recursive=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staging), str(target))
        return target

    # stages ---------------------------------------------------------------------------

    def history(self) -> dict[str, list[StageEntry]]:
        path = self._path(STAGES_FILE)
        raw = self._read_json(path) if self.fs.exists(path) else {}
        return {stage: [StageEntry.model_validate(e) for e in raw.get(stage, [])]
                for stage in STAGES}

    def stage(self, stage: str) -> str | None:
        entries = self.history()[_check_stage(stage)]
        return entries[-1].version if entries else None

    def resolve(self, version: str | None = None, stage: str | None = None) -> Manifest:
        """The manifest for a version (its id or a unique prefix), a stage, or the latest
        version."""
        if version and stage:
            raise RegistryError("give a version or a stage, not both")
        if stage:
            current = self.stage(stage)
            if current is None:
                raise RegistryError(f"stage {stage!r} has no version yet: "
                                    f"`recstack models promote VERSION --stage {stage}`")
            return self.manifest(current)
        return self.manifest(version) if version else self.latest()

    def promote(self, version: str, stage: str, by: str = "cli", note: str = "") -> StageEntry:
        version = self.find(version)  # must exist; the stage keeps the whole id
        history = self.history()
        entry = StageEntry(version=version, at=datetime.now(UTC), by=by, note=note)
        history[_check_stage(stage)].append(entry)
        self._save(history)
        return entry

    def rollback(self, stage: str, by: str = "cli") -> StageEntry:
        """Point `stage` back at the version promoted before its current one. Rollbacks
        walk back one promotion each (v1, v2, v3: v2, then v1), never toggling."""
        history = self.history()
        entries = history[_check_stage(stage)]
        versions = line(entries)
        if len(versions) < 2:
            raise RegistryError(f"stage {stage!r} has no earlier version to roll back to")
        entry = StageEntry(version=versions[-2], at=datetime.now(UTC), by=by,
                           note=f"rollback from {versions[-1]}", action="rollback")
        entries.append(entry)
        self._save(history)
        return entry

    def _save(self, history: dict[str, list[StageEntry]]) -> None:
        self._write_json(self._path(STAGES_FILE),
                         {s: [e.model_dump(mode="json") for e in entries]
                          for s, entries in history.items()})

    # io -------------------------------------------------------------------------------

    def _read_json(self, path: str) -> Any:
        with self.fs.open(path, "r") as handle:
            return json.load(handle)

    def _write_json(self, path: str, payload: Any) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.tmp"
        with self.fs.open(tmp, "w") as handle:
            json.dump(payload, handle, indent=1, sort_keys=True)
        # A rename is atomic on local disks; object stores replace the key whole anyway.
        self.fs.mv(tmp, path)


def single_version(version_dir: Path) -> Registry:
    """A registry holding only the version in `version_dir` (a directory with its
    manifest, as KServe's storage initializer leaves one at /mnt/models), linked
    from a temporary directory under the version's own id."""
    path = version_dir / MANIFEST
    if not path.is_file():
        raise RegistryError(f"{version_dir}: no {MANIFEST} there; a version directory "
                            "holds the manifest and the artifacts `recstack train` wrote")
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise RegistryError(f"{path}: not a RecStack manifest ({exc})") from exc
    if not _VERSION.match(manifest.version):
        raise RegistryError(f"{path}: invalid version id {manifest.version!r}")
    root = Path(tempfile.mkdtemp(prefix="recstack-model-dir-"))
    (root / "versions").mkdir()
    (root / "versions" / manifest.version).symlink_to(version_dir.resolve(),
                                                      target_is_directory=True)
    return Registry(root)


def _check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise RegistryError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    return stage
