"""Verified downloads against a local HTTP server on 127.0.0.1 and file:// URLs, never the internet."""

from __future__ import annotations

import hashlib
import http.server
import threading
import urllib.parse
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsflexinet.data.dirs import fetch_micirp, load_impulse_responses
from dsflexinet.data.download import extract_zip, fetch, read_manifest
from dsflexinet.errors import PipelineError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.root`; honours `Range: bytes=N-`; `/truncated/<name>` promises the whole file but stops
    halfway, like a dropped connection."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urllib.parse.unquote(self.path)
        truncated = path.startswith("/truncated/")
        file = self.server.root / path.removeprefix("/truncated/").lstrip("/")
        self.server.requests.append((path, self.headers.get("Range")))
        if not file.is_file():
            self.send_error(404)
            return
        body = file.read_bytes()
        start = 0
        if (spec := self.headers.get("Range")) and not truncated:
            start = int(spec.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start : len(body) // 2] if truncated else body[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[http.server.ThreadingHTTPServer]:
    root = tmp_path / "served"
    root.mkdir()
    (root / "archive.bin").write_bytes(PAYLOAD)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.root, httpd.requests = root, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_good_download(server, tmp_path: Path) -> None:
    out = fetch(f"{server.url}/archive.bin", tmp_path / "out" / "archive.bin", MD5)
    assert out.read_bytes() == PAYLOAD
    assert not out.with_name("archive.bin.part").exists()


def test_verified_file_is_not_downloaded_again(server, tmp_path: Path) -> None:
    out = tmp_path / "archive.bin"
    fetch(f"{server.url}/archive.bin", out, MD5)
    fetch(f"{server.url}/archive.bin", out, MD5)
    assert len(server.requests) == 1


def test_truncated_download_fails_and_is_never_final(server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("dsflexinet.data.download.RETRY_DELAY_SECONDS", 0.0)
    out = tmp_path / "archive.bin"
    with pytest.raises(PipelineError, match=r"truncated/archive\.bin: download failed after 2 attempts \(truncated"):
        fetch(f"{server.url}/truncated/archive.bin", out, MD5, attempts=2)
    assert not out.exists()


def test_interrupted_download_resumes_with_range(server, tmp_path: Path) -> None:
    out = tmp_path / "archive.bin"
    out.with_name("archive.bin.part").write_bytes(PAYLOAD[:300_000])  # what a dropped connection left
    fetch(f"{server.url}/archive.bin", out, MD5)
    assert out.read_bytes() == PAYLOAD
    assert server.requests == [("/archive.bin", "bytes=300000-")]


def test_wrong_checksum_fails_and_deletes(server, tmp_path: Path) -> None:
    out = tmp_path / "archive.bin"
    with pytest.raises(PipelineError, match=r"md5 checksum mismatch \(expected 0{32}, got " + MD5):
        fetch(f"{server.url}/archive.bin", out, "0" * 32)
    assert not out.exists() and not out.with_name("archive.bin.part").exists()


def test_corrupt_file_on_server_is_rejected(server, tmp_path: Path) -> None:
    (server.root / "archive.bin").write_bytes(PAYLOAD[:-1] + b"\x00")
    with pytest.raises(PipelineError, match="checksum mismatch"):
        fetch(f"{server.url}/archive.bin", tmp_path / "archive.bin", MD5)


def test_missing_file_names_url(server, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"/absent\.bin: download failed \(HTTP 404 Not Found\)"):
        fetch(f"{server.url}/absent.bin", tmp_path / "absent.bin", MD5)
    assert len(server.requests) == 1  # a 404 is final: no retries


def test_file_url(tmp_path: Path) -> None:
    source = tmp_path / "mirror" / "archive.bin"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    out = fetch(source.as_uri(), tmp_path / "archive.bin", hashlib.sha256(PAYLOAD).hexdigest(), "sha256")
    assert out.read_bytes() == PAYLOAD


def test_tau22_manifest_lists_all_archives() -> None:
    manifest = read_manifest("tau22.md5")
    assert len(manifest) == 17
    assert manifest["TAU-urban-acoustic-scenes-2022-mobile-development.audio.1.zip"] == (
        "8be14bdbd844481dce059ab31fbd2239"
    )
    assert manifest["TAU-urban-acoustic-scenes-2022-mobile-development.meta.zip"] == (
        "419b6ff6570f1030730352dc80cd8d15"
    )


def test_extract_once_and_resume(tmp_path: Path) -> None:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("root/audio/x.wav", b"x" * 1000)
        bundle.writestr("root/meta.csv", "filename\tscene_label\n")
    target = tmp_path / "data"
    assert extract_zip(archive, target) == 2
    assert extract_zip(archive, target) == 0  # already there at full size
    (target / "root/audio/x.wav").write_bytes(b"x" * 10)  # an interrupted extraction's leftover
    assert extract_zip(archive, target) == 1
    assert (target / "root/audio/x.wav").read_bytes() == b"x" * 1000


def test_corrupt_zip(tmp_path: Path) -> None:
    archive = tmp_path / "bundle.zip"
    archive.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(PipelineError, match=r"bundle\.zip: not a valid zip archive"):
        extract_zip(archive, tmp_path / "data")


def test_micirp_fetch_from_local_server(server, micirp_dir: Path, tmp_path: Path) -> None:
    """The real 66 responses, served on 127.0.0.1, all verified by SHA-256 (names with '&' included)."""
    for path in micirp_dir.glob("*.wav"):
        (server.root / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "micirp"
    fetch_micirp(out, server.url, downloads=tmp_path / "downloads")
    assert sorted(p.name for p in out.glob("*.wav")) == sorted(read_manifest("micirp.sha256"))
    assert "B&O_BM2.wav" in {p.name for p in out.glob("*.wav")}
    responses = load_impulse_responses(out, 32000)
    assert responses.responses.shape[0] == 66
    assert responses.lengths.max() <= round(22050 * 32000 / 44100) + 1


def test_micirp_fetch_rejects_tampered_file(server, micirp_dir: Path, tmp_path: Path) -> None:
    for path in micirp_dir.glob("*.wav"):
        (server.root / path.name).write_bytes(path.read_bytes())
    (server.root / "Altec_639.wav").write_bytes(b"RIFF" + b"\x00" * 100)
    with pytest.raises(PipelineError, match=r"Altec_639\.wav: sha256 checksum mismatch"):
        fetch_micirp(tmp_path / "micirp", server.url, downloads=tmp_path / "downloads")


# --- checksums, sources that do not exist, a wrong file at the destination, progress -------------------------


def _counting_transfers(monkeypatch) -> list[str]:
    from dsflexinet.data import download

    calls: list[str] = []
    transfer = download._transfer
    monkeypatch.setattr(download, "_transfer", lambda url, *args: (calls.append(url), transfer(url, *args))[1])
    return calls


def test_upper_case_checksum_keeps_a_good_file(server, tmp_path: Path) -> None:
    out = fetch(f"{server.url}/archive.bin", tmp_path / "archive.bin", MD5.upper())
    assert out.read_bytes() == PAYLOAD
    fetch(f"{server.url}/archive.bin", out, MD5.upper())  # verified as it is: not downloaded again
    assert len(server.requests) == 1 and out.read_bytes() == PAYLOAD


def test_malformed_checksum_fails_before_downloading(server, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"archive\.bin: md5 checksum '8be14bdb' is not 32 hexadecimal digits$"):
        fetch(f"{server.url}/archive.bin", tmp_path / "archive.bin", "8be14bdb")
    assert server.requests == [] and not (tmp_path / "archive.bin.part").exists()


def test_missing_file_url_fails_at_once_without_resume_advice(tmp_path: Path, monkeypatch) -> None:
    calls = _counting_transfers(monkeypatch)
    source = (tmp_path / "mirror" / "absent.zip").as_uri()
    with pytest.raises(PipelineError) as failure:
        fetch(source, tmp_path / "absent.zip", MD5)
    assert str(failure.value) == f"{source}: download failed (No such file or directory)"
    assert calls == [source]  # no retries
    assert not (tmp_path / "absent.zip.part").exists()


def test_http_404_message_does_not_mention_a_part(server, tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as failure:
        fetch(f"{server.url}/absent.bin", tmp_path / "absent.bin", MD5)
    assert str(failure.value) == f"{server.url}/absent.bin: download failed (HTTP 404 Not Found)"


def test_resume_advice_only_when_a_part_exists(server, tmp_path: Path, monkeypatch) -> None:
    import socket

    monkeypatch.setattr("dsflexinet.data.download.RETRY_DELAY_SECONDS", 0.0)
    with socket.socket() as probe:  # a port nobody listens on: the connection is refused, nothing arrives
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/archive.bin"
    with pytest.raises(PipelineError, match=r"download failed after 2 attempts \(.*refused\)$") as failure:
        fetch(closed, tmp_path / "a" / "archive.bin", MD5, attempts=2)
    assert ".part" not in str(failure.value)

    out = tmp_path / "b" / "archive.bin"
    with pytest.raises(PipelineError) as failure:
        fetch(f"{server.url}/truncated/archive.bin", out, MD5, attempts=2)
    part = out.with_name("archive.bin.part")
    assert part.stat().st_size == len(PAYLOAD) // 2  # what arrived is kept for the rerun
    assert str(failure.value).endswith(f"; rerun to resume from {part} (524.3 kB so far)")


def test_wrong_file_at_destination_is_replaced_only_by_a_verified_download(server, tmp_path: Path, caplog) -> None:
    out = tmp_path / "archive.bin"
    out.write_bytes(b"an older, wrong file")
    with caplog.at_level("WARNING", logger="dsflexinet"):
        fetch(f"{server.url}/archive.bin", out, MD5)
    assert out.read_bytes() == PAYLOAD
    assert "the file is replaced once the download is verified" in caplog.text


@pytest.mark.parametrize("served", ["corrupt", "absent"])
def test_wrong_file_at_destination_stays_when_the_download_fails(served, server, tmp_path: Path) -> None:
    (server.root / "archive.bin").write_bytes(PAYLOAD[:-1] + b"\x00")
    out = tmp_path / "archive.bin"
    out.write_bytes(b"an older, wrong file")
    name = "archive.bin" if served == "corrupt" else "absent.bin"
    with pytest.raises(PipelineError) as failure:
        fetch(f"{server.url}/{name}", out, MD5)
    message = str(failure.value)
    assert message.endswith(f"; {out}, which does not match, was left in place")
    assert ("the download was deleted" in message) == (served == "corrupt")
    assert out.read_bytes() == b"an older, wrong file"
    assert not out.with_name("archive.bin.part").exists()


def _progress_lines(caplog, subject: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dsflexinet" and r.getMessage().startswith(subject)]


def test_download_logs_progress_and_a_final_line(server, tmp_path: Path, monkeypatch, caplog) -> None:
    url = f"{server.url}/archive.bin"
    with caplog.at_level("INFO", logger="dsflexinet"):
        fetch(url, tmp_path / "quiet" / "archive.bin", MD5)  # faster than the interval: the final line only
    assert len(_progress_lines(caplog, url)) == 1
    caplog.clear()

    monkeypatch.setattr("dsflexinet.data.download.PROGRESS_SECONDS", 0.0)
    monkeypatch.setattr("dsflexinet.data.download.CHUNK_BYTES", 1 << 16)
    out = tmp_path / "archive.bin"
    out.with_name("archive.bin.part").write_bytes(PAYLOAD[: 1 << 18])
    with caplog.at_level("INFO", logger="dsflexinet"):
        fetch(url, out, MD5)
    lines = _progress_lines(caplog, url)
    assert len(lines) == 12 + 1  # 12 blocks of 64 KiB after the 256 KiB resumed, then the final line
    assert lines[0].startswith(f"{url}: 327.7 kB of 1.0 MB (31%) in ")
    assert all(line.endswith("B/s") for line in lines[:-1])
    assert lines[-1].startswith(f"{url}: finished, 1.0 MB of 1.0 MB (100%) in ")
    assert lines[-1].endswith("(resumed at 262.1 kB)")


def test_extraction_logs_its_count(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr("dsflexinet.data.download.PROGRESS_SECONDS", 0.0)
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for index in range(5):
            bundle.writestr(f"root/audio/{index}.wav", b"x" * 100)
    with caplog.at_level("INFO", logger="dsflexinet"):
        extract_zip(archive, tmp_path / "data")
    lines = _progress_lines(caplog, str(archive))
    assert [line.split(": ", 1)[1].split(" in ")[0] for line in lines] == [
        *(f"{done} of 5 members ({done / 5:.0%})" for done in range(5)),
        "finished, 5 of 5 members (100%)",
    ]
    assert lines[-1].endswith("; 5 files written, 0 already there")
    caplog.clear()
    with caplog.at_level("INFO", logger="dsflexinet"):
        assert extract_zip(archive, tmp_path / "data") == 0
    assert _progress_lines(caplog, str(archive))[-1].endswith("; 0 files written, 5 already there")
