"""Resumable, verified downloads of the public data used by the CPU-scale replica study.

Sources and licences (each is the user's to accept; splip redistributes none of them):

- Tiny ImageNet (Stanford CS231n): 200 ImageNet classes, 64x64 photos, 500 train + 50 val per class.
  ImageNet terms of access: non-commercial research and education only.
- QuickDraw simplified drawings (Google Creative Lab): one ``<category>.ndjson`` per category, one
  JSON drawing per line. CC BY 4.0, Google.
- TU-Berlin sketches (Eitz, Hays, Alexa, "How do humans sketch objects?", SIGGRAPH 2012): 250 classes
  x 80 sketches as PNG. CC BY 4.0, Eitz et al. 2012.

Layout under ``data_root`` (what the rest of splip reads)::

    <data_root>/tiny-imagenet-200/            wnids.txt, words.txt, train/, val/ (the zip's own folder)
    <data_root>/quickdraw/simplified/<category>.ndjson
    <data_root>/tu-berlin/png/<class>/<id>.png   (and png/filelist.txt)

Downloads stream to ``<file>.part`` and resume with an HTTP Range request when run again; only a
verified file is moved to its final name. Archives are extracted into a temporary folder and renamed
into place, so an interrupted run never leaves a half-extracted dataset folder.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from splip.io import sha256_of
from splip.progress import tqdm

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
QUICKDRAW_URL = "https://storage.googleapis.com/quickdraw_dataset/full/simplified"
TU_BERLIN_URL = "https://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch/sketches_png.zip"
QUICKDRAW_CATEGORIES_URL = (
    "https://github.com/googlecreativelab/quickdraw-dataset/blob/master/categories.txt"
)

_TINY_IMAGENET_REQUIRED = ("wnids.txt", "words.txt", "train", "val/val_annotations.txt")
_TU_BERLIN_REQUIRED = ("png",)
# http.client raises HTTPException subclasses (not OSError) for malformed or cut-off responses.
_NETWORK_ERRORS = (OSError, http.client.HTTPException)


class DownloadError(OSError):
    """A download or extraction failed; the message says what was expected, what was found and the fix.

    ``http_status`` is the HTTP status code when the server answered with an error, else None.
    """

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


def _mismatch(path: Path, size: int | None, sha256: str | None, total: int | None) -> str | None:
    """What is wrong with `path` against the expected byte counts and digest, or None if it matches."""
    actual = path.stat().st_size
    for what, expected in (("server's length", total), ("expected size", size)):
        if expected is not None and actual != expected:
            return f"size {actual} bytes, but the {what} is {expected} bytes"
    if sha256 is not None:
        digest = sha256_of(path)
        if digest != sha256.lower():
            return f"SHA-256 {digest}, expected {sha256.lower()}"
    return None


def _network_error(url: str, part: Path, kept: int, reason: object) -> DownloadError:
    return DownloadError(
        f"Download of {url} failed: {reason}. {kept} bytes are kept in {part}; "
        f"run the same call again to resume from there."
    )


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total length) of a ``Content-Range: bytes a-b/total`` (or ``bytes */total``) header."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[len("bytes "):].partition("/")
    first = int(span.split("-")[0]) if span[:1].isdigit() else None
    return first, int(total) if total.isdigit() else None


def download_file(url: str, destination: str | Path, sha256: str | None = None, size: int | None = None,
                  progress: bool = True, chunk_bytes: int = 1 << 20, timeout: float = 60.0,
                  *, leave: bool = True) -> Path:
    """Download `url` to `destination`, resuming a previous partial download; returns `destination`.

    Bytes go to ``<destination>.part``. If that exists, the request asks for ``Range: bytes=<n>-``; a 206
    answer is appended, a 200 answer (server ignores Range) restarts the file, a 416 answer means the
    .part is already complete. The finished file must have the server's length (Content-Length, or the
    Content-Range total), `size` and `sha256` (hex) when given; then it is moved to `destination`
    atomically. A mismatch deletes the .part and raises DownloadError; a network failure keeps it (run
    again to resume). An existing `destination` is returned without network access if it matches
    `size`/`sha256`, and is never overwritten. `leave` keeps the progress bar after completion.
    """
    destination = Path(destination)
    if destination.exists():
        problem = _mismatch(destination, size, sha256, None)
        if problem is not None:
            raise DownloadError(
                f"{destination} already exists but has {problem}. It was left untouched; "
                f"delete it and run again to re-download it from {url}."
            )
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})

    def corrupt(problem: str) -> DownloadError:
        part.unlink(missing_ok=True)
        return DownloadError(
            f"Download of {url} is corrupt: the file has {problem}. The partial file {part} was deleted; "
            f"run the same call again to re-download (if it keeps failing, the source has changed)."
        )

    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            _, total = _content_range(error.headers.get("Content-Range"))
            problem = _mismatch(part, size, sha256, total)
            if problem is not None:
                raise corrupt(problem) from None
            os.replace(part, destination)
            return destination
        raise DownloadError(f"Download of {url} failed: HTTP {error.code} {error.reason}.",
                            http_status=error.code) from None
    except _NETWORK_ERRORS as error:
        raise _network_error(url, part, offset, getattr(error, "reason", error)) from None

    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if response.status == 206:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != offset:
                raise corrupt(f"a resumed range starting at byte {first} instead of {offset}")
            if total is None and length is not None:
                total = offset + length
            mode = "ab"
        else:
            offset, total, mode = 0, length, "wb"
        if total is not None and size is not None and total != size:
            raise corrupt(f"a server length of {total} bytes, but the expected size is {size} bytes")
        received = offset
        with open(part, mode) as handle, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                              unit_divisor=1024, desc=destination.name,
                                              disable=not progress, leave=leave) as bar:
            while True:
                try:
                    chunk = response.read(chunk_bytes)
                except _NETWORK_ERRORS as error:
                    handle.flush()
                    raise _network_error(url, part, received, error) from None
                if not chunk:
                    break
                handle.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client ends a body cut short by a closed connection silently, so a short count is a drop.
    if total is not None and received < total:
        raise _network_error(url, part, received, f"connection closed after {received} of {total} bytes")
    problem = _mismatch(part, size, sha256, total)
    if problem is not None:
        raise corrupt(problem)
    os.replace(part, destination)
    return destination


def _missing(folder: Path, required: tuple[str, ...]) -> list[str]:
    return [name for name in required if not (folder / name).exists()]


def _extract_zip(archive: Path, final: Path, inside: str | None, required: tuple[str, ...]) -> None:
    """Extract `archive` so that its folder `inside` (or, if None, its whole content) becomes `final`.

    Extraction goes to a temporary folder next to `final` that is renamed into place only once the
    `required` paths are present, so an interrupted run leaves no half folder.
    """
    retry = f"Delete {archive} and run again to re-download it."
    try:
        with zipfile.ZipFile(archive) as zipped:
            for name in zipped.namelist():
                path = PurePosixPath(name.replace("\\", "/"))
                if path.is_absolute() or ".." in path.parts or PureWindowsPath(name).drive:
                    raise DownloadError(f"{archive} has an entry {name!r} that points outside the "
                                        f"extraction folder; refusing to extract it. {retry}")
            bad = zipped.testzip()
            if bad is not None:
                raise DownloadError(f"{archive} is corrupt: member {bad!r} fails its CRC-32 check. {retry}")
            scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.extracting-", dir=final.parent))
            try:
                zipped.extractall(scratch)
                source = scratch / inside if inside else scratch
                missing = _missing(source, required)
                if missing:
                    raise DownloadError(f"{archive} does not hold the expected files: missing "
                                        f"{', '.join(inside + '/' + m if inside else m for m in missing)}. "
                                        f"{retry}")
                os.replace(source, final)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise DownloadError(f"{archive} is not a readable zip file ({error}). {retry}") from None


def _download_and_extract(url: str, archive: Path, final: Path, inside: str | None,
                          required: tuple[str, ...], progress: bool) -> Path:
    if final.is_dir() and not _missing(final, required):
        return final
    if final.exists():
        raise DownloadError(f"{final} exists but is incomplete (missing "
                            f"{', '.join(_missing(final, required))}). It was left untouched; "
                            f"delete it and run again to download and extract it.")
    final.parent.mkdir(parents=True, exist_ok=True)
    download_file(url, archive, progress=progress)
    _extract_zip(archive, final, inside, required)
    return final


def download_tiny_imagenet(data_root: str | Path, url: str = TINY_IMAGENET_URL, progress: bool = True) -> Path:
    """Download and extract Tiny ImageNet; returns ``<data_root>/tiny-imagenet-200``.

    The zip (about 237 MB) is kept at ``<data_root>/tiny-imagenet-200.zip`` and its download resumes
    when interrupted. No published SHA-256 exists, so integrity is checked by the server's
    Content-Length and by the CRC-32 of every zip member. Returns at once, without network access,
    when the folder already holds wnids.txt, words.txt, train/ and val/val_annotations.txt.
    """
    root = Path(data_root)
    return _download_and_extract(url, root / "tiny-imagenet-200.zip", root / "tiny-imagenet-200",
                                 "tiny-imagenet-200", _TINY_IMAGENET_REQUIRED, progress)


def download_tu_berlin(data_root: str | Path, url: str = TU_BERLIN_URL, progress: bool = True) -> Path:
    """Download and extract the TU-Berlin sketches; returns ``<data_root>/tu-berlin``.

    The zip (about 525 MB, kept at ``<data_root>/tu-berlin-sketches_png.zip``) holds
    ``png/<class>/<id>.png``, so the sketches land in ``<data_root>/tu-berlin/png/<class>/<id>.png``.
    Integrity is checked by the server's Content-Length and the zip's CRC-32s. Returns at once,
    without network access, when ``<data_root>/tu-berlin/png`` exists.
    """
    root = Path(data_root)
    return _download_and_extract(url, root / "tu-berlin-sketches_png.zip", root / "tu-berlin",
                                 None, _TU_BERLIN_REQUIRED, progress)


def download_quickdraw(categories: list[str], data_root: str | Path, base_url: str = QUICKDRAW_URL,
                       progress: bool = True) -> list[Path]:
    """Download QuickDraw simplified drawings; returns ``<data_root>/quickdraw/simplified/<category>.ndjson``
    for each category, in order.

    Each file comes from ``<base_url>/<category, URL-quoted>.ndjson`` (e.g. ``teddy%20bear.ndjson``), its
    size checked against Content-Length and its first line against the QuickDraw format (a JSON object
    with a "drawing" key). Files already present are kept without network access.
    """
    folder = Path(data_root) / "quickdraw" / "simplified"
    for category in categories:
        if not category or category.startswith(".") or "/" in category or "\\" in category:
            raise ValueError(f"Invalid QuickDraw category {category!r}: use a name from {QUICKDRAW_CATEGORIES_URL}")
    paths = []
    for category in tqdm(categories, desc="QuickDraw", unit="category", disable=not progress):
        path = folder / f"{category}.ndjson"
        paths.append(path)
        if path.exists():
            continue
        url = f"{base_url.rstrip('/')}/{urllib.parse.quote(category)}.ndjson"
        try:
            download_file(url, path, progress=progress, leave=False)
        except DownloadError as error:
            if error.http_status == 404:
                raise DownloadError(f"QuickDraw has no category {category!r} ({url} answered 404). Category "
                                    f"names are those of {QUICKDRAW_CATEGORIES_URL}.", http_status=404) from None
            raise
        with open(path, "rb") as handle:
            first = handle.readline()
        try:
            record = json.loads(first)
            valid = isinstance(record, dict) and "drawing" in record
        except ValueError:
            valid = False
        if not valid:
            path.unlink()
            raise DownloadError(f"{url} is not a QuickDraw simplified file (its first line is not a JSON "
                                f"drawing with a 'drawing' key); the downloaded file was deleted. Check "
                                f"base_url={base_url!r}.")
    return paths
