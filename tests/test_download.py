"""Tests for splip.download against a local HTTP server on 127.0.0.1 that serves in-memory bytes."""

from __future__ import annotations

import hashlib
import io
import json
import random
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from splip.download import (
    DownloadError,
    download_file,
    download_quickdraw,
    download_tiny_imagenet,
    download_tu_berlin,
)

TIMEOUT = 5.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def reset(self) -> None:
        self.files: dict[str, bytes] = {}  # request path (as sent, URL-quoted) -> body
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.ignore_range = False
        self.cut_after: int | None = None  # one-shot: send this many body bytes, then close
        self.claimed_length: int | None = None  # Content-Length to announce instead of the true one


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        requested_range = self.headers.get("Range")
        server.requests.append((self.path, requested_range))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if requested_range and not server.ignore_range:
            start = int(requested_range.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(server.claimed_length or len(body)))
        self.end_headers()
        if server.cut_after is not None:
            body, server.cut_after = body[: server.cut_after], None
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture(scope="module")
def _running_server():
    server = _Server(("127.0.0.1", 0), _Handler)
    server.reset()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(_running_server: _Server) -> _Server:
    _running_server.reset()
    return _running_server


def url_of(server: _Server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zipped:
        for name, data in members.items():
            zipped.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


# ---------------------------------------------------------------- download_file


def test_plain_download_with_checks(server: _Server, tmp_path: Path) -> None:
    data = payload(50_000)
    server.files["/f.bin"] = data
    out = download_file(url_of(server, "/f.bin"), tmp_path / "sub" / "f.bin", sha256=hashlib.sha256(data).hexdigest(),
                        size=len(data), progress=True, chunk_bytes=4096, timeout=TIMEOUT)
    assert out == tmp_path / "sub" / "f.bin"
    assert out.read_bytes() == data
    assert not (tmp_path / "sub" / "f.bin.part").exists()
    assert server.requests == [("/f.bin", None)]


def test_dropped_connection_then_resume(server: _Server, tmp_path: Path) -> None:
    data = payload(300_000, seed=1)
    server.files["/f.bin"] = data
    server.cut_after = 100_000
    destination = tmp_path / "f.bin"
    part = tmp_path / "f.bin.part"
    with pytest.raises(DownloadError, match=r"100000 bytes are kept.*resume"):
        download_file(url_of(server, "/f.bin"), destination, progress=False, chunk_bytes=16384, timeout=TIMEOUT)
    assert not destination.exists()
    assert part.read_bytes() == data[:100_000]

    download_file(url_of(server, "/f.bin"), destination, sha256=hashlib.sha256(data).hexdigest(),
                  progress=False, chunk_bytes=16384, timeout=TIMEOUT)
    assert server.requests[-1] == ("/f.bin", "bytes=100000-")
    assert destination.read_bytes() == data
    assert not part.exists()


def test_server_ignoring_range_restarts(server: _Server, tmp_path: Path) -> None:
    data = payload(200_000, seed=2)
    server.files["/f.bin"] = data
    server.cut_after = 70_000
    destination = tmp_path / "f.bin"
    with pytest.raises(DownloadError):
        download_file(url_of(server, "/f.bin"), destination, progress=False, timeout=TIMEOUT)
    server.ignore_range = True
    download_file(url_of(server, "/f.bin"), destination, size=len(data), progress=False, timeout=TIMEOUT)
    assert server.requests[-1] == ("/f.bin", "bytes=70000-")
    assert destination.read_bytes() == data


def test_complete_part_and_416(server: _Server, tmp_path: Path) -> None:
    data = payload(10_000, seed=3)
    server.files["/f.bin"] = data
    (tmp_path / "f.bin.part").write_bytes(data)
    out = download_file(url_of(server, "/f.bin"), tmp_path / "f.bin", sha256=hashlib.sha256(data).hexdigest(),
                        progress=False, timeout=TIMEOUT)
    assert server.requests == [("/f.bin", "bytes=10000-")]
    assert out.read_bytes() == data


def test_wrong_sha256_deletes_part(server: _Server, tmp_path: Path) -> None:
    data = payload(20_000, seed=4)
    server.files["/f.bin"] = data
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(DownloadError) as caught:
        download_file(url_of(server, "/f.bin"), tmp_path / "f.bin", sha256=wrong, progress=False, timeout=TIMEOUT)
    message = str(caught.value)
    assert wrong in message and hashlib.sha256(data).hexdigest() in message
    assert "/f.bin" in message and "run the same call again" in message
    assert not (tmp_path / "f.bin").exists()
    assert not (tmp_path / "f.bin.part").exists()


def test_wrong_content_length(server: _Server, tmp_path: Path) -> None:
    data = payload(20_000, seed=5)
    server.files["/f.bin"] = data
    server.claimed_length = 15_000  # a truncated body, announced as complete
    with pytest.raises(DownloadError, match=r"15000 bytes.*20000 bytes"):
        download_file(url_of(server, "/f.bin"), tmp_path / "f.bin", size=len(data), progress=False, timeout=TIMEOUT)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()

    # announced longer than sent: the connection closes early, which is a resumable drop
    server.claimed_length = 25_000
    with pytest.raises(DownloadError, match="resume"):
        download_file(url_of(server, "/f.bin"), tmp_path / "f.bin", progress=False, timeout=TIMEOUT)
    assert (tmp_path / "f.bin.part").read_bytes() == data
    assert not (tmp_path / "f.bin").exists()


def test_existing_destination(server: _Server, tmp_path: Path) -> None:
    data = b"already here"
    destination = tmp_path / "f.bin"
    destination.write_bytes(data)
    url = url_of(server, "/f.bin")
    assert download_file(url, destination, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                         progress=False, timeout=TIMEOUT) == destination
    with pytest.raises(DownloadError, match="delete it"):
        download_file(url, destination, size=len(data) + 1, progress=False, timeout=TIMEOUT)
    assert destination.read_bytes() == data
    assert server.requests == []


def test_http_error_and_refused_connection(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="404") as caught:
        download_file(url_of(server, "/missing"), tmp_path / "f.bin", progress=False, timeout=TIMEOUT)
    assert caught.value.http_status == 404
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match="resume"):
        download_file(f"http://127.0.0.1:{port}/f.bin", tmp_path / "f.bin", progress=False, timeout=TIMEOUT)
    assert not (tmp_path / "f.bin").exists()


# ---------------------------------------------------------------- Tiny ImageNet

TINY = {
    "tiny-imagenet-200/wnids.txt": b"n01\nn02\n",
    "tiny-imagenet-200/words.txt": b"n01\tgoldfish\nn02\tcat, kitty\n",
    "tiny-imagenet-200/train/n01/images/n01_0.JPEG": b"JPEG-n01-" * 200,
    "tiny-imagenet-200/train/n02/images/n02_0.JPEG": b"JPEG-n02-" * 200,
    "tiny-imagenet-200/val/val_annotations.txt": b"val_0.JPEG\tn01\t0\t0\t63\t63\n",
    "tiny-imagenet-200/val/images/val_0.JPEG": b"JPEG-val-" * 200,
}


def test_tiny_imagenet(server: _Server, tmp_path: Path) -> None:
    server.files["/tiny.zip"] = make_zip(TINY)
    root = tmp_path / "data"
    out = download_tiny_imagenet(root, url=url_of(server, "/tiny.zip"), progress=False)
    assert out == root / "tiny-imagenet-200"
    for name, data in TINY.items():
        assert (root / name).read_bytes() == data
    assert sorted(p.name for p in root.iterdir()) == ["tiny-imagenet-200", "tiny-imagenet-200.zip"]
    n_requests = len(server.requests)
    assert download_tiny_imagenet(root, url=url_of(server, "/tiny.zip"), progress=False) == out
    assert len(server.requests) == n_requests == 1


def test_tiny_imagenet_corrupt_zip(server: _Server, tmp_path: Path) -> None:
    blob = bytearray(make_zip(TINY))
    member = TINY["tiny-imagenet-200/train/n02/images/n02_0.JPEG"]
    middle = blob.index(member) + len(member) // 2
    blob[middle:middle + 4] = bytes(b ^ 0xFF for b in blob[middle:middle + 4])
    server.files["/tiny.zip"] = bytes(blob)
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"n02_0\.JPEG.*CRC.*Delete"):
        download_tiny_imagenet(root, url=url_of(server, "/tiny.zip"), progress=False)
    assert not (root / "tiny-imagenet-200").exists()
    assert [p.name for p in root.iterdir()] == ["tiny-imagenet-200.zip"]


@pytest.mark.parametrize("evil", ["../evil", "tiny-imagenet-200/../../evil", "ABSOLUTE"])
def test_tiny_imagenet_escaping_member(server: _Server, tmp_path: Path, evil: str) -> None:
    if evil == "ABSOLUTE":
        evil = str(tmp_path / "evil")
    server.files["/tiny.zip"] = make_zip({**TINY, evil: b"pwned"})
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="outside"):
        download_tiny_imagenet(root, url=url_of(server, "/tiny.zip"), progress=False)
    assert not (tmp_path / "evil").exists() and not (root / "evil").exists()
    assert [p.name for p in root.iterdir()] == ["tiny-imagenet-200.zip"]


def test_tiny_imagenet_incomplete(server: _Server, tmp_path: Path) -> None:
    members = {k: v for k, v in TINY.items() if not k.endswith("words.txt")}
    server.files["/tiny.zip"] = make_zip(members)
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="missing tiny-imagenet-200/words.txt"):
        download_tiny_imagenet(root, url=url_of(server, "/tiny.zip"), progress=False)
    assert [p.name for p in root.iterdir()] == ["tiny-imagenet-200.zip"]  # no half folder, no scratch

    # a user's incomplete folder is not overwritten and costs no download
    (root / "tiny-imagenet-200").mkdir()
    (root / "tiny-imagenet-200.zip").unlink()
    with pytest.raises(DownloadError, match="incomplete.*wnids.txt"):
        download_tiny_imagenet(root, url=url_of(server, "/tiny.zip"), progress=False)
    assert len(server.requests) == 1


# ---------------------------------------------------------------- QuickDraw


def ndjson(word: str, n: int) -> bytes:
    lines = [json.dumps({"word": word, "key_id": str(i), "drawing": [[[0, 10 * i], [5, 5]]]}) for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


def test_quickdraw(server: _Server, tmp_path: Path) -> None:
    files = {"cat": ndjson("cat", 3), "teddy bear": ndjson("teddy bear", 2)}
    server.files["/qd/cat.ndjson"] = files["cat"]
    server.files["/qd/teddy%20bear.ndjson"] = files["teddy bear"]
    root = tmp_path / "data"
    paths = download_quickdraw(["cat", "teddy bear"], root, base_url=url_of(server, "/qd/"), progress=True)
    assert paths == [root / "quickdraw" / "simplified" / "cat.ndjson",
                     root / "quickdraw" / "simplified" / "teddy bear.ndjson"]
    assert [p.read_bytes() for p in paths] == [files["cat"], files["teddy bear"]]
    assert [path for path, _ in server.requests] == ["/qd/cat.ndjson", "/qd/teddy%20bear.ndjson"]
    again = download_quickdraw(["teddy bear", "cat"], root, base_url=url_of(server, "/qd"), progress=False)
    assert again == paths[::-1]
    assert len(server.requests) == 2


def test_quickdraw_unknown_category(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"'unicorn cat'.*404.*categories\.txt"):
        download_quickdraw(["unicorn cat"], tmp_path, base_url=url_of(server, "/qd"), progress=False)
    assert server.requests == [("/qd/unicorn%20cat.ndjson", None)]
    with pytest.raises(ValueError, match="category"):
        download_quickdraw(["../cat"], tmp_path, base_url=url_of(server, "/qd"), progress=False)


@pytest.mark.parametrize("content", [b"<html>not found</html>\n", b'{"word": "cat"}\n', b'["drawing"]\n'])
def test_quickdraw_not_ndjson(server: _Server, tmp_path: Path, content: bytes) -> None:
    server.files["/qd/cat.ndjson"] = content
    with pytest.raises(DownloadError, match="not a QuickDraw simplified file"):
        download_quickdraw(["cat"], tmp_path, base_url=url_of(server, "/qd"), progress=False)
    folder = tmp_path / "quickdraw" / "simplified"
    assert list(folder.iterdir()) == []


# ---------------------------------------------------------------- TU-Berlin


def test_tu_berlin(server: _Server, tmp_path: Path) -> None:
    members = {
        "png/filelist.txt": b"airplane/1.png\nfloor lamp/2.png\n",
        "png/airplane/1.png": b"\x89PNG-airplane" * 50,
        "png/floor lamp/2.png": b"\x89PNG-lamp" * 50,
    }
    server.files["/tub.zip"] = make_zip(members)
    root = tmp_path / "data"
    out = download_tu_berlin(root, url=url_of(server, "/tub.zip"), progress=False)
    assert out == root / "tu-berlin"
    assert (root / "tu-berlin" / "png" / "airplane" / "1.png").read_bytes() == members["png/airplane/1.png"]
    assert (root / "tu-berlin" / "png" / "floor lamp" / "2.png").read_bytes() == members["png/floor lamp/2.png"]
    assert sorted(p.name for p in root.iterdir()) == ["tu-berlin", "tu-berlin-sketches_png.zip"]
    assert download_tu_berlin(root, url=url_of(server, "/tub.zip"), progress=False) == out
    assert len(server.requests) == 1
