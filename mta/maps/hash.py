"""hash: tables, an indexed file (SQLite, no Berkeley DB) built from text and swapped in by rename.

FORMAT. ``hash:/etc/postfix/access`` reads ``/etc/postfix/access.db``: an SQLite
database with one table ``map(k PRIMARY KEY, v)`` and a ``meta`` table that
names the format and the source file. Keys are stored lowercased (Postfix folds
fixed-string table keys unless postmap -f is given).

ATOMIC REBUILD. hash_build() writes ``access.db.<pid>.tmp`` beside the target,
fsyncs it, renames it over ``access.db`` and fsyncs the directory. A reader
holding the old file keeps reading the old inode; a reader opening the path
sees either the whole old table or the whole new one, never a partial one.
Readers open the file read-only with SQLite's immutable flag, which is safe
because a built file is never modified in place.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from mta import log
from mta.errors import MapError
from mta.maps import Map

if TYPE_CHECKING:
    from mta.config import MainConfig

FORMAT = "mta-hash-1"
SUFFIX = ".db"
ANSWERS_MAX = 10000  # answers one open table remembers (then it starts afresh)


def hash_db_path(name: str | Path) -> Path:
    """The indexed file for a table's source name: ``/etc/aliases`` -> ``/etc/aliases.db``."""
    return Path(f"{name}{SUFFIX}")


def table_mode(source_mode: int, inherit: bool = True) -> int:
    """Mode of a new table: owner read-write plus the source's group and other read bits.

    + source_mode: st_mode of the source file.
    + inherit: False gives 0644 (postmap -p, postalias -p).
    >>> oct(table_mode(0o640)), oct(table_mode(0o755)), oct(table_mode(0o600, False))
    ('0o640', '0o644', '0o644')
    """
    return 0o600 | (source_mode & 0o044) if inherit else 0o644


def table_owner_mode(db_path: Path, source_mode: int | None,
                     inherit: bool = True) -> tuple[int, int | None, int | None]:
    """The (mode, uid, gid) a rebuilt table gets, as postmap and postalias give it.

    An existing table keeps its mode (and owner, when we are root: Postfix
    rewrites it in place). A new one gets table_mode() of the source, or 0644
    when the source mode is unknown. uid/gid None means "leave as created".
    Raises MapError when the existing table cannot be examined.
    """
    try:
        current = os.stat(db_path)
    except FileNotFoundError:
        current = None
    except OSError as exc:
        raise MapError(f"open database {db_path}: {os.strerror(exc.errno or 0)}") from exc
    if current is not None:
        mode = current.st_mode & 0o7777
        if os.geteuid() == 0:
            return mode, current.st_uid, current.st_gid
        return mode, None, None
    if source_mode is None:
        return 0o644, None, None
    return table_mode(source_mode, inherit), None, None


def hash_build(
    db_path: Path,
    entries: Iterable[tuple[str, str]],
    *,
    source: Path | None = None,
    mode: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
) -> int:
    """Write a new indexed table and atomically replace db_path with it.

    + db_path: the final file, e.g. ``/etc/postfix/access.db``.
    + entries: (key, value) pairs, keys already folded and de-duplicated by the caller.
    + source: the text file it was built from, recorded for messages.
    + mode: file mode of the result (default 0644; the umask does not apply).
    + uid, gid: owner to give the file (default: unchanged, i.e. the caller).
    Returns the number of entries written. Raises MapError; on failure the old
    table, if any, is left untouched and no temporary file remains.
    """
    tmp = db_path.with_name(f"{db_path.name}.{os.getpid()}.tmp")
    count = 0
    try:
        if tmp.exists():
            tmp.unlink()
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("BEGIN")
            conn.execute("CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT NOT NULL)")
            conn.execute("CREATE TABLE map(k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID")
            conn.executemany(
                "INSERT INTO meta VALUES(?, ?)",
                [("format", FORMAT), ("source", str(source or ""))],
            )
            cursor = conn.executemany("INSERT INTO map VALUES(?, ?)", entries)
            count = cursor.rowcount
            conn.execute("COMMIT")
        finally:
            conn.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fchmod(fd, 0o644 if mode is None else mode)
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, db_path)
        dir_fd = os.open(db_path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except sqlite3.IntegrityError as exc:
        tmp.unlink(missing_ok=True)
        raise MapError(f"build {db_path}: duplicate key ({exc})") from exc
    except (OSError, sqlite3.Error) as exc:
        tmp.unlink(missing_ok=True)
        raise MapError(f"build {db_path}: {exc}") from exc
    return count


class HashMap(Map):
    """A read-only view of one built ``hash:`` table.

    The file is opened once; when the source text file is newer than the
    indexed file, a warning is logged as Postfix's dict_db does.
    """

    type_name = "hash"
    fold_case = True

    def __init__(self, spec: str, name: str, cfg: "MainConfig | None" = None) -> None:
        super().__init__(spec)
        self.source = Path(name)
        self.path = hash_db_path(name)
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise MapError(f"open database {self.path}: {os.strerror(exc.errno or 0)}") from exc
        self.inode = (st.st_dev, st.st_ino)
        self._answers: dict[str, str | None] = {}
        try:
            src_mtime = os.stat(self.source).st_mtime
        except OSError:
            src_mtime = None
        if src_mtime is not None and src_mtime > st.st_mtime:
            log.msg_warn(f"database {self.path} is older than source file {self.source}")
        try:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True,
                                         check_same_thread=False)
            row = self._conn.execute("SELECT v FROM meta WHERE k = 'format'").fetchone()
        except sqlite3.Error as exc:
            raise MapError(
                f"open database {self.path}: not an mta indexed table ({exc}); "
                f"rebuild it with 'mta postmap {spec}' (or 'mta postalias' for aliases)"
            ) from exc
        if row is None or row[0] != FORMAT:
            raise MapError(f"open database {self.path}: unknown table format {row!r}")

    def lookup(self, key: str) -> str | None:
        # The file is opened immutable and replaced only by rename, so what this handle
        # answered once stays true for it: remember answers (misses too), within a bound.
        try:
            return self._answers[key]
        except KeyError:
            pass
        row = self._conn.execute("SELECT v FROM map WHERE k = ?", (key,)).fetchone()
        value = None if row is None else row[0]
        if len(self._answers) >= ANSWERS_MAX:
            self._answers.clear()
        self._answers[key] = value
        return value

    def items(self) -> list[tuple[str, str]]:
        """All entries, in key order (postmap -s)."""
        return list(self._conn.execute("SELECT k, v FROM map ORDER BY k"))

    def changed(self) -> bool:
        """True when the path now names a different file (a rebuild happened since open)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self.inode

    def close(self) -> None:
        self._conn.close()
