"""Verified, resumable downloads and one-time extraction.

A file reaches its final name only after its checksum matched: until then it lives at `<name>.part`, which a
later call resumes with an HTTP Range request (or restarts where the server ignores ranges). A short body, a
dropped connection or a wrong checksum fails with one line naming the URL; a mismatching `.part` is deleted so
the next try starts clean.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path

from dsflexinet.atomic import atomic_path
from dsflexinet.errors import PipelineError

CHUNK_BYTES = 1 << 20
RETRY_DELAY_SECONDS = 2.0  # doubled after each failed attempt
USER_AGENT = "dsflexinet-pipeline (+https://github.com/)"


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
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        received = 0
        with part.open("ab" if resumed else "wb") as handle:
            while block := response.read(CHUNK_BYTES):
                handle.write(block)
                received += len(block)
    if expected is not None and received < expected:
        raise ConnectionError(f"truncated download: received {received} of {expected} bytes")


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
    if checksum is not None and destination.is_file() and file_digest(destination, algorithm) == checksum:
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    last_error = ""
    for attempt in range(attempts):
        try:
            _transfer(url, part, timeout)
            break
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code not in (408, 429):  # the server's answer will not change
                raise PipelineError(f"{url}: download failed (HTTP {error.code} {error.reason})") from None
            last_error = f"HTTP {error.code} {error.reason}"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            last_error = str(getattr(error, "reason", error))
        if attempt + 1 < attempts:
            time.sleep(RETRY_DELAY_SECONDS * 2**attempt)
    else:
        raise PipelineError(
            f"{url}: download failed after {attempts} attempts ({last_error}); rerun to resume from {part}"
        )
    actual = None if checksum is None else file_digest(part, algorithm)
    if actual != checksum:
        part.unlink()
        raise PipelineError(f"{url}: {algorithm} checksum mismatch (expected {checksum}, got {actual}); deleted")
    os.replace(part, destination)
    return destination


def extract_zip(archive: str | Path, target: str | Path) -> int:
    """Unpack `archive` into `target`, skipping members already there at full size; returns how many were written.

    Members are written to a temporary name and renamed, so an interrupted extraction never leaves a complete-
    looking file, and rerunning it after an interruption finishes the job without redoing it.
    """
    archive, target = Path(archive), Path(target)
    written = 0
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                destination = target / member.filename
                if not destination.resolve().is_relative_to(target.resolve()):
                    raise PipelineError(f"{archive}: member {member.filename!r} points outside {target}")
                if member.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                if destination.is_file() and destination.stat().st_size == member.file_size:
                    continue
                with atomic_path(destination) as tmp, bundle.open(member) as source, tmp.open("wb") as sink:
                    shutil.copyfileobj(source, sink, CHUNK_BYTES)
                written += 1
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as error:
        raise PipelineError(f"{archive}: not a valid zip archive ({error})") from None
    except (OSError, EOFError) as error:  # includes CRC failures ("Bad CRC-32") of a damaged archive
        raise PipelineError(f"{archive}: extraction failed ({error})") from None
    return written
