"""The model registry: versions with manifests, and stages with history.

Layout under any fsspec URI (a local path, `s3://...`, `memory://...`):

    REG/versions/<version>/manifest.json    # written last: its presence marks a
    REG/versions/<version>/<artifacts>      # complete version
    REG/stage-history/00000042.json         # every stage's history, as of change 42

A KServe `storageUri` points at `REG/versions/<version>`. Each stage keeps its
whole history (newest last), so a rollback is one step back: each one undoes the
newest promotion not yet undone.

The stage history is a compare-and-swap log: a change reads the newest
generation N and creates N+1 with an exclusive create (`open(..., "x")` through a
hard link locally, `If-None-Match: *` on S3), so of two writers that read the same
N one wins and the other gets `StageConflict` instead of overwriting it. Old
generations stay (a few hundred bytes each): the log is its own audit trail.
Registries written before the log keep their `stages.json`, read as generation 0.
"""

from __future__ import annotations

import errno
import json
import os
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
STAGES_FILE = "stages.json"  # before the log: read, never written
HISTORY_DIR = "stage-history"
EVALUATIONS = "evaluations"  # versions/<id>/evaluations/<window>/: scored on fresh data
# The stage a version must have been in first: staging takes only versions that have
# been in dev, prod only versions that have been in staging.
PREVIOUS_STAGE = {"staging": "dev", "prod": "staging"}
MATCHES_SHOWN = 10  # versions an ambiguous prefix lists
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RegistryError(LookupError):
    pass


class StageConflict(RegistryError):
    """Another change to the stage history landed between our read and our write."""


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


# promote and rollback move the stage; the canary entries only record what a rollout
# did and decided (the stage keeps its version until a promote).
Action = Literal["promote", "rollback", "canary_start", "canary_wait", "canary_stop"]
MOVES = ("promote", "rollback")


class StageEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    at: datetime
    by: str
    note: str = ""
    action: Action = "promote"
    """A rollback undoes the newest promotion not yet undone (see `line`)."""
    forced: bool = False
    """Promoted with `--force`, past failing gates or the stage order; `note` says why."""
    details: dict[str, Any] = Field(default_factory=dict)
    """What decided it: each gate's figures, a canary check's numbers."""

    def undoes(self) -> bool:
        # Histories written before `action` existed mark a rollback in the note only.
        return self.action == "rollback" or (self.action == "promote"
                                             and self.note.startswith("rollback from "))


def line(entries: list[StageEntry]) -> list[str]:
    """The versions a stage stands on, oldest first: each promotion adds one, each
    rollback takes the newest off. Its last is the stage's current version."""
    versions: list[str] = []
    for entry in entries:
        if entry.undoes():
            versions = versions[:-1]
        elif entry.action == "promote":
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

    def write_beside(self, version: str, name: str, data: bytes) -> str:
        """Add a file to a version after the fact (`evaluations/<window>/...`: what it
        scored on fresh data); the artifacts `publish` wrote are never replaced."""
        version = self.find(version)
        if name.split("/", 1)[0] != EVALUATIONS or ".." in name.split("/"):
            raise RegistryError(f"only {EVALUATIONS}/ may be added to a version, not {name}")
        path = self._path("versions", version, name)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)
        return f"{self.version_uri(version)}/{name}"

    def read_beside(self, version: str, name: str) -> bytes | None:
        path = self._path("versions", self.find(version), name)
        return self.fs.cat_file(path) if self.fs.exists(path) else None

    # stages ---------------------------------------------------------------------------

    def history(self) -> dict[str, list[StageEntry]]:
        return self._history()[1]

    def _history(self) -> tuple[int, dict[str, list[StageEntry]]]:
        """The newest generation of the stage history and its entries."""
        base = self._path(HISTORY_DIR)
        generations = sorted(
            int(name) for name in (str(p).rstrip("/").rsplit("/", 1)[-1].removesuffix(".json")
                                   for p in (self.fs.ls(base, detail=False)
                                             if self.fs.exists(base) else []))
            if name.isdigit())
        if generations:
            generation = generations[-1]
            raw = self._read_json(self._generation_path(generation))
        else:
            legacy = self._path(STAGES_FILE)
            generation, raw = 0, (self._read_json(legacy) if self.fs.exists(legacy) else {})
        return generation, {stage: [StageEntry.model_validate(e) for e in raw.get(stage, [])]
                            for stage in STAGES}

    def _generation_path(self, generation: int) -> str:
        return self._path(HISTORY_DIR, f"{generation:08d}.json")

    def stage(self, stage: str) -> str | None:
        return current_version(self.history()[_check_stage(stage)])

    def resolve(self, version: str | None = None, stage: str | None = None) -> Manifest:
        """The manifest for a version (its id or a unique prefix), a stage, or the latest
        version."""
        if version and stage:
            raise RegistryError("give a version or a stage, not both")
        if stage:
            current = self.stage(stage)
            if current is None:
                raise RegistryError(f"stage {stage!r} has no version yet: "
                                    f"`recstack models promote VERSION --to {stage}`")
            return self.manifest(current)
        return self.manifest(version) if version else self.latest()

    def order_problem(self, version: str, stage: str,
                      history: dict[str, list[StageEntry]] | None = None) -> str | None:
        """Why `version` may not enter `stage` yet (it has not been in the stage before
        it), or None."""
        previous = PREVIOUS_STAGE.get(_check_stage(stage))
        if previous is None:
            return None
        entries = (history or self.history())[previous]
        been = {e.version for e in entries if e.action == "promote"}
        if version in been:
            return None
        return f"{version} has never been in {previous}; {stage} takes only versions " \
               f"that have been in {previous}"

    def promote(self, version: str, stage: str, by: str = "cli", note: str = "",
                force_reason: str | None = None, details: dict[str, Any] | None = None,
                expected: str | Literal["any"] | None = "any") -> StageEntry:
        """Point `stage` at `version`, in stage order (dev, staging, prod) unless
        `force_reason` says why not. `expected` is the version the caller checked the
        gates against: if the stage moved meanwhile, StageConflict."""
        version = self.find(version)  # must exist; the stage keeps the whole id
        _check_stage(stage)

        def change(history: dict[str, list[StageEntry]]) -> StageEntry:
            current = line(history[stage])
            now = current[-1] if current else None
            if expected != "any" and now != expected:
                raise StageConflict(f"{stage} moved to {now} while {version} was being "
                                    f"checked against {expected}; run the gates again")
            problem = self.order_problem(version, stage, history) if force_reason is None else None
            if problem:
                raise RegistryError(problem)
            return StageEntry(version=version, at=datetime.now(UTC), by=by,
                              note=force_reason if force_reason is not None else note,
                              forced=force_reason is not None, details=details or {})

        return self._change(stage, change)

    def rollback(self, stage: str, by: str = "cli", note: str = "",
                 details: dict[str, Any] | None = None) -> StageEntry:
        """Point `stage` back at the version promoted before its current one. Rollbacks
        walk back one promotion each (v1, v2, v3: v2, then v1), never toggling."""
        _check_stage(stage)

        def change(history: dict[str, list[StageEntry]]) -> StageEntry:
            versions = line(history[stage])
            if len(versions) < 2:
                raise RegistryError(f"stage {stage!r} has no earlier version to roll "
                                    "back to")
            return StageEntry(version=versions[-2], at=datetime.now(UTC), by=by,
                              note=f"rollback from {versions[-1]}" + (f": {note}" if note
                                                                      else ""),
                              action="rollback", details=details or {})

        return self._change(stage, change)

    def record(self, stage: str, version: str, action: Action, by: str = "cli",
               note: str = "", details: dict[str, Any] | None = None) -> StageEntry:
        """Write what a rollout did or decided (`canary_*`) into the stage's history; the
        stage keeps its version. Checked on the generation it is written over, so two
        starts that raced cannot both land: a `canary_start` needs no canary open, a
        wait or stop needs VERSION's canary open."""
        if action in MOVES:
            raise RegistryError(f"{action} moves the stage: use promote or rollback")
        version = self.find(version)
        _check_stage(stage)

        def change(history: dict[str, list[StageEntry]]) -> StageEntry:
            open_now = open_canary(history[stage])
            if action == "canary_start" and open_now is not None:
                raise RegistryError(f"a canary of {open_now.version} is open on {stage} "
                                    "already: `recstack rollout check` decides it first")
            if action != "canary_start" and (open_now is None or open_now.version != version):
                raise RegistryError(f"no canary of {version} is open on {stage}"
                                    + (f" (the open one is {open_now.version})"
                                       if open_now else ""))
            return StageEntry(version=version, at=datetime.now(UTC), by=by, note=note,
                              action=action, details=details or {})

        return self._change(stage, change)

    def canary(self, stage: str) -> StageEntry | None:
        """The stage's open canary: its newest `canary_start`, unless a `canary_stop` or
        a promotion came after it."""
        return open_canary(self.history()[_check_stage(stage)])

    def _change(self, stage: str, make: Any) -> StageEntry:
        """Read generation N, append `make(history)` to `stage`, create generation N+1
        exclusively. A writer that lost the race gets StageConflict."""
        generation, history = self._history()
        entry: StageEntry = make(history)
        history[stage].append(entry)
        payload = json.dumps({s: [e.model_dump(mode="json") for e in entries]
                              for s, entries in history.items()}, indent=1, sort_keys=True)
        try:
            self._create(self._generation_path(generation + 1), payload.encode())
        except FileExistsError:
            raise StageConflict(f"the stage history of {self.uri} changed while this "
                                f"{entry.action} of {stage} was being written; nothing "
                                "was changed: run it again") from None
        return entry

    def _create(self, path: str, data: bytes) -> None:
        """Write `path` only if it does not exist (FileExistsError otherwise), whole."""
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        if isinstance(self.fs, LocalFileSystem):
            # Written aside, then hard-linked: link(2) fails if the name exists, and
            # readers never see a half-written file.
            fd, tmp = tempfile.mkstemp(dir=path.rsplit("/", 1)[0], prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.link(tmp, path)
            finally:
                os.unlink(tmp)
            return
        try:
            self.fs.pipe_file(path, data, mode="create")  # s3fs: If-None-Match: *
        except OSError as exc:
            if exc.errno == errno.EINVAL and "recondition" in str(exc):
                raise FileExistsError(path) from exc  # a 412 without its condition named
            raise

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


def current_version(entries: list[StageEntry]) -> str | None:
    """Of one stage's history: the version it stands on now."""
    versions = line(entries)
    return versions[-1] if versions else None


def open_canary(entries: list[StageEntry]) -> StageEntry | None:
    """Of one stage's history: its newest `canary_start`, unless a `canary_stop` or a
    promotion came after it."""
    for entry in reversed(entries):
        if entry.action == "canary_start":
            return entry
        if entry.action in ("canary_stop", *MOVES):
            return None
    return None


def _check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise RegistryError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    return stage
