"""Reading the user's files for an import, safely: one helper shared by every importer.

- Regular files only. Links are followed, then the target must be a regular file: a named pipe (FIFO) called
  `x.csv` would block forever, a link to `/dev/zero` would read until memory runs out. The file is opened
  non-blocking and checked again on the open descriptor, so a file swapped for a pipe in between is refused too.
- A size guard: at most `MAX_IMPORT_BYTES` (overridable with `$DYNASCOPE_MAX_IMPORT_BYTES`), for the file on disk
  and, for `.gz`, for the decompressed data. The read itself stops at the limit, so a file whose reported size is
  wrong (`/proc`) cannot get past it either.
- gzip is decompressed member by member, so the message says what is wrong: not gzip at all, truncated, corrupt,
  or trailing data that is not gzip (at byte N).
- Messages name the place (file, line, column) and say what to do; the problems of a path (no such file, a
  symlink loop, a dangling link, permission denied, a folder, a pipe, a device) are told apart.

Every error is an `engine.errors.BadInputError` (the CLI's exit 2).
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import zlib
from pathlib import Path
from typing import Any

from engine.errors import BadInputError

MAX_IMPORT_BYTES = 1024**3
"""The largest file an import reads, and the largest a `.gz` may decompress to: 1 GiB (the whole source is held
in memory while it is checked). `$DYNASCOPE_MAX_IMPORT_BYTES` overrides it."""
MAX_IMPORT_BYTES_ENV = "DYNASCOPE_MAX_IMPORT_BYTES"

MAX_JSON_DEPTH = 512
"""JSON nested deeper than this is reported as such (datasets nest a few levels: SQuAD 6)."""

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 16 * 1024 * 1024


def max_import_bytes() -> int:
    """`MAX_IMPORT_BYTES`, or `$DYNASCOPE_MAX_IMPORT_BYTES` when set (a whole number of bytes, at least 1)."""
    raw = os.environ.get(MAX_IMPORT_BYTES_ENV, "").strip()
    if not raw:
        return MAX_IMPORT_BYTES
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise BadInputError(
            f"${MAX_IMPORT_BYTES_ENV}={raw!r}: give the import size limit as a whole number of bytes "
            f"(at least 1), e.g. {MAX_IMPORT_BYTES}"
        )
    return value


def human_bytes(n: int) -> str:
    """`1.5 GiB (1,610,612,736 bytes)`."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            short = f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
            return short if unit == "bytes" else f"{short} ({n:,} bytes)"
        size /= 1024
    return f"{n:,} bytes"  # pragma: no cover


def too_big(place: str, what: str, size: int | str, limit: int) -> BadInputError:
    shown = human_bytes(size) if isinstance(size, int) else size
    return BadInputError(
        f"{place}: {what} {shown}, over the import limit of {human_bytes(limit)}; split the data into smaller "
        f"files, or raise the limit with {MAX_IMPORT_BYTES_ENV}=<bytes>"
    )


# ---- paths -------------------------------------------------------------------------------------------------------


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _shown(path: Path) -> str:
    """The path, with its link target when it is a symbolic link (`x.csv -> /dev/zero`)."""
    try:
        return f"{path} -> {os.readlink(path)}" if path.is_symlink() else str(path)
    except OSError:
        return str(path)


def _stat_error(path: Path, exc: OSError, what: str) -> BadInputError:
    code = exc.errno
    if code == errno.ELOOP:
        return BadInputError(
            f"{_shown(path)}: a symbolic link loop (the links never reach a {what}); fix or remove the link"
        )
    if code == errno.ENOENT:
        if path.is_symlink():
            return BadInputError(
                f"{_shown(path)}: a dangling symbolic link (its target does not exist); fix the link or name "
                f"the {what} itself"
            )
        return BadInputError(
            f"{path}: no such {what}; check the path (relative paths start from {Path.cwd()})"
        )
    if code == errno.ENOTDIR:
        return BadInputError(f"{path}: no such {what} (a part of the path is a file, not a folder)")
    if code == errno.EACCES or code == errno.EPERM:
        return BadInputError(
            f"{path}: permission denied; check the permissions of the {what} and its folders"
        )
    return BadInputError(f"{path}: cannot reach the {what} ({exc.strerror or exc}); check the path")


def check_regular_file(path: Path) -> os.stat_result:
    """Follow links, then require a regular file within the size limit; raise BadInputError saying what the
    path is otherwise (missing, a loop, a dangling link, a folder, a pipe, a device, too large)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _stat_error(path, exc, "file") from exc
    if stat.S_ISDIR(st.st_mode):
        raise BadInputError(f"{path}: is a folder; name a data file inside it")
    if not stat.S_ISREG(st.st_mode):
        raise BadInputError(
            f"{_shown(path)}: {_kind(st.st_mode)}, not a regular file; an import reads regular files only "
            "(copy the data into a file first)"
        )
    limit = max_import_bytes()
    if st.st_size > limit:
        raise too_big(str(path), "the file is", st.st_size, limit)
    return st


def check_directory(path: Path) -> None:
    """Follow links, then require a folder; raise BadInputError saying what the path is otherwise."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _stat_error(path, exc, "directory") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise BadInputError(f"{_shown(path)}: not a directory")


def read_bytes(path: Path) -> bytes:
    """The whole content of a regular file, at most the import limit (checked before and while reading)."""
    check_regular_file(path)
    limit = max_import_bytes()
    try:
        # O_NONBLOCK: should the path have become a pipe since the check, opening it does not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise BadInputError(
                f"{path}: cannot read the file (permission denied); check its permissions"
            ) from exc
        raise _stat_error(path, exc, "file") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadInputError(
                f"{_shown(path)}: {_kind(st.st_mode)}, not a regular file; an import reads regular files only"
            )
        if st.st_size > limit:
            raise too_big(str(path), "the file is", st.st_size, limit)
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_big(str(path), "the file holds more than", f"{limit:,} bytes", limit)
        return b"".join(chunks)
    except OSError as exc:
        raise BadInputError(
            f"{path}: cannot read the file ({exc.strerror or exc}); check the file and the disk"
        ) from exc
    finally:
        os.close(fd)


# ---- gzip ------------------------------------------------------------------------------------------------------


def gunzip(raw: bytes, place: str) -> bytes:
    """Decompress every gzip member of `raw`, within the import limit. Trailing zero bytes (tape padding) are
    ignored, as gzip does; any other data after the last member is refused with its offset."""
    if raw[:2] != _GZIP_MAGIC:
        raise BadInputError(
            f"{place}: not a gzip file although it ends in .gz (it starts with {raw[:4]!r}); "
            "rename it without .gz, or recompress it with gzip"
        )
    limit = max_import_bytes()
    view = memoryview(raw)
    out: list[bytes] = []
    total = 0
    pos = 0
    member = 1
    while True:
        d = zlib.decompressobj(wbits=31)
        try:
            chunk = d.decompress(view[pos:], limit + 1 - total)
            out.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_big(place, "the data decompresses to more than", f"{limit:,} bytes", limit)
        except zlib.error as exc:
            raise BadInputError(
                f"{place}: the gzip stream is corrupt (member {member}, starting at byte {pos}: {exc}); "
                "download or copy the file again"
            ) from exc
        if not d.eof:
            raise BadInputError(
                f"{place}: the gzip stream is truncated (the file ends inside the compressed data, "
                f"{len(raw):,} bytes read); download or copy the file again"
            )
        rest = d.unused_data
        pos = len(raw) - len(rest)
        if not rest or not rest.strip(b"\x00"):
            break
        if rest[:2] != _GZIP_MAGIC:
            raise BadInputError(
                f"{place}: trailing garbage at byte {pos:,}: the gzip data ends there and the "
                f"{len(rest):,} bytes after it are not gzip; cut the file at byte {pos:,} "
                f"(head -c {pos} FILE > FIXED.gz) or download it again"
            )
        member += 1
    return b"".join(out)


# ---- text ------------------------------------------------------------------------------------------------------


def decode_utf8(raw: bytes, place: str) -> str:
    """UTF-8 text (a leading UTF-8 byte order mark is dropped); UTF-16 and other encodings are refused with
    the line and byte of the first bad byte."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise BadInputError(
            f"{place}: the file is UTF-16 (it starts with a UTF-16 byte order mark), not UTF-8; convert it, "
            "e.g. `iconv -f utf-16 -t utf-8`"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BadInputError(
            f"{place}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from exc


def read_text(path: Path, compressed: bool) -> str:
    """The file as text: a regular file within the limit, gunzipped when `compressed`, UTF-8."""
    raw = read_bytes(path)
    if compressed:
        raw = gunzip(raw, str(path))
    return decode_utf8(raw, str(path))


# ---- JSON ------------------------------------------------------------------------------------------------------

_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


def json_depth_position(text: str, limit: int = MAX_JSON_DEPTH) -> tuple[int, int]:
    """(line, column) where the nesting of `text` first goes deeper than `limit` (or the end of the text)."""
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return position(text, match.start())
        elif token in "]}":
            depth -= 1
    return position(text, len(text))


def position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def json_too_deep(place: str, text: str, first_line: int = 1) -> BadInputError:
    """The error for JSON nested too deeply to parse (Python's parser gives up with a RecursionError); `text`
    starts on line `first_line` of the file (a JSONL line)."""
    line, col = json_depth_position(text)
    return BadInputError(
        f"{place}:{line + first_line - 1}:{col}: JSON nested too deeply (more than {MAX_JSON_DEPTH} levels here; "
        "a dataset nests a few levels); this is not a dataset file, or it is damaged"
    )


def describe(value: Any, width: int = 40) -> str:
    """A short, safe description of a value for a message: never a deep repr, never a huge one."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return repr(value) if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, int):
        return repr(value) if value.bit_length() < 200 else "a very large integer"
    if isinstance(value, str):
        return repr(value if len(value) <= width else value[:width] + "...")
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, (bytes, bytearray)):
        return "binary data"
    return f"a value of type {type(value).__name__}"
