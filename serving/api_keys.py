"""API keys: from a variable of comma-separated keys and/or a file of keys (one per
line; blank lines and `#` comments ignored). The collector's write routes use
`RECSTACK_API_KEYS` / `RECSTACK_API_KEYS_FILE`; `recstack serve` names its own pair
for inference and another for model control (serving/http_server.py).

The file is re-read whenever it changes, checked on every request (one `stat`),
because a mounted Kubernetes secret is rotated in place: the kubelet swaps a
symlink, so the file's inode and mtime change. A file that cannot be read after
start keeps the last keys read, so that a glitch during a rotation does not lock
every client out; at start it must be readable.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

KEYS_VAR = "RECSTACK_API_KEYS"
KEYS_FILE_VAR = "RECSTACK_API_KEYS_FILE"


class ApiKeyError(ValueError):
    """The configured keys cannot be used (unreadable file, no keys)."""


def read_keys_file(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


class ApiKeys:
    def __init__(self, keys: Iterable[str] = (), file: Path | None = None,
                 names: tuple[str, str] = (KEYS_VAR, KEYS_FILE_VAR)) -> None:
        """`names`: the two variables, for messages."""
        self._fixed = [k.encode() for k in keys if k]
        self._file = file
        self._var, self._file_var = names
        self._from_file: list[bytes] = []
        self._signature: tuple[int, int, int] | None = None
        self._failing = False  # log a failing file once, not on every request
        if file is not None:
            try:
                self._reload(file)
            except (OSError, ValueError) as exc:
                raise ApiKeyError(f"{self._file_var}={file}: cannot read it: {exc}") from exc
        if not self._fixed and not self._from_file:
            raise ApiKeyError(f"{self._var} / {self._file_var} hold no key")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, var: str = KEYS_VAR,
                 file_var: str = KEYS_FILE_VAR) -> ApiKeys | None:
        """The keys the environment names in `var` and `file_var`; None when neither
        is set."""
        env = os.environ if env is None else env
        inline, file = env.get(var, "").strip(), env.get(file_var, "").strip()
        if not inline and not file:
            return None
        return cls([k.strip() for k in inline.split(",")], Path(file) if file else None,
                   (var, file_var))

    def accepts(self, presented: str) -> bool:
        candidate = presented.encode()
        ok = False
        for key in self._current():
            ok |= hmac.compare_digest(candidate, key)  # no early exit: constant time per key
        return ok

    def _current(self) -> list[bytes]:
        if self._file is not None:
            try:
                self._reload(self._file)
                self._failing = False
            except (OSError, ValueError) as exc:  # ValueError: not UTF-8
                if not self._failing:
                    log.error("%s=%s: cannot read it (%s); keeping the %d key(s) read before",
                              self._file_var, self._file, exc, len(self._from_file))
                self._failing = True
        return self._fixed + self._from_file

    def _reload(self, file: Path) -> None:
        stat = file.stat()  # follows the secret's symlinks
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if signature == self._signature:
            return
        keys = [k.encode() for k in read_keys_file(file)]
        if self._signature is not None:
            log.info("%s=%s changed: %d key(s) now", self._file_var, file, len(keys))
        self._from_file, self._signature = keys, signature
