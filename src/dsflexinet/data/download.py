"""Verified, resumable downloads and one-time extraction.

A file reaches its final name only after its checksum matched: until then it lives at `<name>.part`, which a
later call resumes with an HTTP Range request (or restarts where the server ignores ranges). A short body, a
dropped connection or a wrong checksum fails with one line naming the URL; a mismatching `.part` is deleted so
the next try starts clean. A wrong file already at the destination is replaced only by a verified download.
Both long steps (the TAU22 archives are 30 GB) log their progress, so a slow link can be told from a hang.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import string
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path

from dsflexinet.atomic import atomic_path
from dsflexinet.errors import PipelineError

log = logging.getLogger("dsflexinet")

CHUNK_BYTES = 1 << 20
RETRY_DELAY_SECONDS = 2.0  # doubled after each failed attempt
PROGRESS_SECONDS = 15.0  # a progress line in the job's log at most this often
USER_AGENT = "dsflexinet-pipeline (+https://github.com/)"
# A local source that is absent or unreadable: asking again gives the same answer.
_FINAL_LOCAL_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):  # noqa: B007 (the unit the loop stops at is the answer)
        if count < 1000:
            break
        count /= 1000
    else:
        unit = "TB"
    return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"


class _Progress:
    """`<what>: <done> of <total> (<share>) in <seconds>, <rate>` in the log at most every PROGRESS_SECONDS, and a
    final line. Counts are bytes, or items with `unit`."""

    def __init__(self, what: str, total: int | None, start: int = 0, unit: str | None = None):
        self.what, self.total, self.start, self.unit = what, total, start, unit
        self.began = self.reported = time.monotonic()

    def _count(self, count: float) -> str:
        return f"{count:,.0f}" if self.unit else _size(count)

    def _describe(self, done: int) -> str:
        seconds = time.monotonic() - self.began
        rate = (done - self.start) / seconds if seconds > 0 else 0.0
        share = f" of {self._count(self.total)}" if self.total else ""
        unit = f" {self.unit}" if self.unit else ""
        percent = f" ({done / self.total:.0%})" if self.total else ""
        return f"{self._count(done)}{share}{unit}{percent} in {seconds:.0f} s, {self._count(rate)}{unit}/s"

    def update(self, done: int) -> None:
        if time.monotonic() - self.reported >= PROGRESS_SECONDS:
            self.reported = time.monotonic()
            log.info("%s: %s", self.what, self._describe(done))

    def finish(self, done: int, note: str = "") -> None:
        log.info("%s: finished, %s%s", self.what, self._describe(done), note)


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(name: str) -> dict[str, str]:
    """A packaged `<checksum>  <file>` manifest (md5sum / sha256sum format) as {file: checksum}."""
    text = resources.files("dsflexinet.data").joinpath("manifests", name).read_text()
    entries = {}
    for line in text.splitlines():
        if line.strip():
            checksum, filename = line.split(maxsplit=1)
            entries[filename.lstrip("*")] = checksum
    return entries


def join_url(base: str, filename: str) -> str:
    """Append a file name to a base URL, percent-encoding characters such as '&' in `B&O_BM2.wav`."""
    return base.rstrip("/") + "/" + urllib.parse.quote(filename)


def _transfer(url: str, part: Path, timeout: float) -> None:
    """Append the rest of `url` to `part`, resuming from its current size when the server allows it."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the part is already complete (or longer than the file)
            return
        raise
    with response:
        resumed = offset and getattr(response, "status", None) == 206
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        progress = _Progress(url, None if expected is None else start + expected, start)
        received = 0
        with part.open("ab" if resumed else "wb") as handle:
            while block := response.read(CHUNK_BYTES):
                handle.write(block)
                received += len(block)
                progress.update(start + received)
    if expected is not None and received < expected:
        raise ConnectionError(f"truncated download: received {received} of {expected} bytes")
    progress.finish(start + received, f" (resumed at {_size(start)})" if start else "")


def _expected_digest(url: str, checksum: str, algorithm: str) -> str:
    """The checksum in lower case, checked for form: a typo must not cost a 30 GB download."""
    try:
        digits = hashlib.new(algorithm).digest_size * 2
    except ValueError:
        raise PipelineError(f"{url}: unknown checksum algorithm {algorithm!r}") from None
    expected = checksum.strip().lower()
    if len(expected) != digits or not set(expected) <= set(string.hexdigits.lower()):
        raise PipelineError(f"{url}: {algorithm} checksum {checksum!r} is not {digits} hexadecimal digits")
    return expected


def fetch(
    url: str,
    destination: str | Path,
    checksum: str | None,
    algorithm: str = "md5",
    attempts: int = 3,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `destination` unless a file with the right checksum is already there.

    `checksum=None` is for files whose bytes are not pinned (only their content is, as with the DCASE'24 subset
    tables): the download is always made and the caller verifies it.
    """
    destination = Path(destination)
    expected = None if checksum is None else _expected_digest(url, checksum, algorithm)
    kept = ""  # what a failure message says about a wrong file at the destination
    if expected is not None and destination.is_file():
        found = file_digest(destination, algorithm)
        if found == expected:
            return destination
        log.warning(
            "%s: %s %s, expected %s; downloading it again (the file is replaced once the download is verified)",
            destination, algorithm, found, expected,
        )  # fmt: skip
        kept = f"; {destination}, which does not match, was left in place"
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    last_error = ""
    for attempt in range(attempts):
        try:
            _transfer(url, part, timeout)
            break
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code not in (408, 429):  # the server's answer will not change
                raise PipelineError(f"{url}: download failed (HTTP {error.code} {error.reason}){kept}") from None
            last_error = f"HTTP {error.code} {error.reason}"
        except urllib.error.URLError as error:
            if isinstance(error.reason, _FINAL_LOCAL_ERRORS):
                raise PipelineError(f"{url}: download failed ({error.reason.strerror}){kept}") from None
            last_error = str(error.reason)
        except (ConnectionError, TimeoutError, OSError) as error:
            last_error = str(error)
        if attempt + 1 < attempts:
            time.sleep(RETRY_DELAY_SECONDS * 2**attempt)
    else:
        partial = part.stat().st_size if part.is_file() else 0
        resume = f"; rerun to resume from {part} ({_size(partial)} so far)" if partial else ""
        raise PipelineError(f"{url}: download failed after {attempts} attempts ({last_error}){resume}{kept}")
    actual = None if expected is None else file_digest(part, algorithm)
    if actual != expected:
        part.unlink()
        raise PipelineError(
            f"{url}: {algorithm} checksum mismatch (expected {expected}, got {actual}); the download was deleted{kept}"
        )
    os.replace(part, destination)
    return destination


def extract_zip(archive: str | Path, target: str | Path) -> int:
    """Unpack `archive` into `target`, skipping members already there at full size; returns how many were written.

    Members are written to a temporary name and renamed, so an interrupted extraction never leaves a complete-
    looking file, and rerunning it after an interruption finishes the job without redoing it.
    """
    archive, target = Path(archive), Path(target)
    written = present = 0
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            progress = _Progress(str(archive), len(members), unit="members")
            for index, member in enumerate(members):
                progress.update(index)
                destination = target / member.filename
                if not destination.resolve().is_relative_to(target.resolve()):
                    raise PipelineError(f"{archive}: member {member.filename!r} points outside {target}")
                if member.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                if destination.is_file() and destination.stat().st_size == member.file_size:
                    present += 1
                    continue
                with atomic_path(destination) as tmp, bundle.open(member) as source, tmp.open("wb") as sink:
                    shutil.copyfileobj(source, sink, CHUNK_BYTES)
                written += 1
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as error:
        raise PipelineError(f"{archive}: not a valid zip archive ({error})") from None
    except (OSError, EOFError) as error:  # includes CRC failures ("Bad CRC-32") of a damaged archive
        raise PipelineError(f"{archive}: extraction failed ({error})") from None
    progress.finish(len(members), f"; {written:,} files written, {present:,} already there")
    return written
