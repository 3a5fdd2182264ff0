"""Check the built book in a real headless browser (Debian's chromium) and keep screenshots.

    .venv/bin/python scripts/check_book.py

Needs `chromium` (Debian: `apt-get install -y chromium`) and a book built by scripts/build_book.py.
For the index (a redirect to the introduction), the train, replica and results pages it checks that
the HTML has its content and that every <img> it refers to is a non-blank image file (the train page
needs at least its two figures, the replica page six), then loads the page in chromium and saves a
screenshot into book/_build/screenshots/: the first screen of the index, the whole other pages (a tall
window, the empty space below the page cut off). A screenshot must not be blank (enough non-white
pixels, enough grey-level variance). On every notebook page it also checks what a reader of a paper
expects: the "Reproduce this page" line with its papermill command, code inputs collapsed (every code
cell but the parameters ones tagged hide-input), no "NaN" in a table, and no absolute path of the
building machine in the page or in the executed notebook's outputs and metadata. Exits non-zero, naming the page
and the problem, on a failure.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from html import unescape
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "book" / "_build" / "html"
SHOTS = ROOT / "book" / "_build" / "screenshots"
# page -> (file, window height, minimum number of <img> figures, text the page must contain)
PAGES = {
    "index": ("index.html", 2000, 0, "SpLIP"),
    "train": ("book/train.html", 9000, 2, "Test metrics beside the paper"),
    "replica": ("book/replica.html", 16000, 6, "What transfers to the paper"),
    "results": ("book/results.html", 9000, 0, "paper (ECCV'24, ViT-B/32 OpenAI, real data)"),
}
NOTEBOOK_PAGES = ("train", "ablations", "tsne", "miniclip", "replica", "results")
OPEN_CELLS = {"parameters", "injected-parameters"}
# Absolute paths of this machine (the checkout, its parent where the data sits, the interpreter's prefix,
# home) and the usual roots of any machine's: none may appear in a page.
MACHINE_PATHS = sorted({str(ROOT), str(ROOT.parent), sys.prefix, str(Path.home())}, key=len, reverse=True)
ANY_MACHINE_PATH = re.compile(r"(?<![\w.~])/(home|root|tmp|Users|work|mnt|scratch|data)/[\w.-]+")
WIDTH = 1280
GAP = 400  # px of empty rows that mark the end of the content
MIN_INK = 0.02  # share of pixels that are not near-white
MIN_STD = 10.0  # grey-level standard deviation (0-255)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    sys.exit("no chromium found: install it (Debian: apt-get install -y chromium)")


def screenshot(browser: str, page: Path, target: Path, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--hide-scrollbars", "--virtual-time-budget=10000",
            f"--window-size={WIDTH},{height}", f"--screenshot={target}", page.as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not target.is_file():
        raise RuntimeError(f"chromium failed on {page} (exit {result.returncode}): {result.stderr[-2000:]}")


def not_blank(grey: np.ndarray) -> tuple[bool, str]:
    """grey: (H, W) grey levels 0-255. Blank: almost all near-white, or almost no variation."""
    ink, std = float((grey < 240).mean()), float(grey.std())
    return ink >= MIN_INK and std >= MIN_STD, f"{ink:.1%} non-white pixels, grey std {std:.1f}"


def check_html(page: Path, min_images: int, must_contain: str) -> list[str]:
    problems = []
    html = page.read_text("utf-8")
    if must_contain not in unescape(html):
        problems.append(f"{page.name} lacks the text {must_contain!r}")
    images = re.findall(r'<img[^>]*\ssrc="([^"]+)"', html)
    if len(images) < min_images:
        problems.append(f"{page.name} has {len(images)} <img> tags, expected at least {min_images}")
    for src in images:
        if src.startswith(("data:", "http:", "https:")):
            continue
        path = page.parent / src
        if not path.is_file():
            problems.append(f"{page.name} refers to a missing image {src}")
            continue
        ok, summary = not_blank(np.asarray(Image.open(path).convert("L"), dtype=np.float64))
        if not ok:
            problems.append(f"{page.name}: image {src} looks blank ({summary})")
    return problems


def _output_texts(notebook: dict) -> list[tuple[int, str]]:
    """(cell index, text) of every output of an executed notebook: streams, errors, text/* data."""
    texts = []
    for index, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            parts = [output.get("text", ""), output.get("evalue", ""), *output.get("traceback", [])]
            parts += [value for kind, value in output.get("data", {}).items() if kind.startswith("text/")]
            texts += [(index, "".join(part) if isinstance(part, list) else part) for part in parts]
    return texts


def machine_paths_in(text: str) -> list[str]:
    found = [path for path in MACHINE_PATHS if path != "/" and path in text]
    return found + [match.group(0) for match in ANY_MACHINE_PATH.finditer(text)]


def check_notebook_page(name: str) -> list[str]:
    """The reader's checks of one notebook page: its executed notebook in book/ and its HTML."""
    problems = []
    notebook = json.loads((ROOT / "book" / f"{name}.ipynb").read_text("utf-8"))
    html = (HTML / "book" / f"{name}.html").read_text("utf-8")
    command = f"papermill notebooks/{name}.ipynb book/{name}.ipynb"
    text = unescape(re.sub(r"<[^>]+>", "", html))
    if "Reproduce this page" not in text or command not in text:
        problems.append(f"{name}: no 'Reproduce this page' line with `{command}`")
    open_cells = [i for i, cell in enumerate(notebook["cells"]) if cell["cell_type"] == "code"
                  and not {"hide-input", "remove-input", "remove-cell"} & set(cell["metadata"].get("tags", []))
                  and not OPEN_CELLS & set(cell["metadata"].get("tags", []))]
    if open_cells:
        problems.append(f"{name}: code cells {open_cells} are not collapsed (hide-input)")
    if "tag_hide-input" not in html:
        problems.append(f"{name}: the HTML has no collapsed (hide-input) cell")
    cells = re.findall(r"<t[dh][^>]*>\s*(?:NaN|nan)\s*</t[dh]>", html)
    if cells:
        problems.append(f"{name}: {len(cells)} table cells show NaN")
    nan_cells, path_cells = set(), {}
    for index, output in _output_texts(notebook):
        if "\nNaN" in output or " NaN " in output or re.search(r"<td>\s*NaN\s*</td>", output):
            nan_cells.add(index)
        if paths := machine_paths_in(output):
            path_cells.setdefault(index, paths[0])
    if nan_cells:
        problems.append(f"{name}: cells {sorted(nan_cells)} print NaN in an output")
    for index, path in path_cells.items():
        problems.append(f"{name}: cell {index}'s output shows the machine path {path!r}")
    if paths := machine_paths_in(text):
        problems.append(f"{name}: the page shows machine paths, e.g. {paths[0]!r}")
    if paths := machine_paths_in(json.dumps(notebook["metadata"])):  # papermill records its input/output paths
        problems.append(f"{name}: the executed notebook's metadata holds machine paths, e.g. {paths[0]!r}")
    return problems


def crop_and_check(path: Path) -> tuple[list[str], str]:
    """Cut the empty space between the end of the page's content and the footer (the window is
    taller than most pages) off the screenshot, then check that what is left is not blank."""
    image = Image.open(path).convert("RGB")
    grey = np.asarray(image.convert("L"), dtype=np.float64)  # (H, W)
    content_rows = np.flatnonzero((grey[:, WIDTH // 5: 4 * WIDTH // 5] < 240).any(axis=1))
    if len(content_rows) > 1:
        gaps = np.diff(content_rows)  # (n - 1,)
        widest = int(gaps.argmax())
        if gaps[widest] > GAP:
            image = image.crop((0, 0, image.width, int(content_rows[widest]) + 40))
            image.save(path)
            grey = np.asarray(image.convert("L"), dtype=np.float64)
    ok, summary = not_blank(grey)
    summary = f"{image.width}x{image.height}, {path.stat().st_size / 1024:.0f} KiB, {summary}"
    return ([] if ok else [f"{path.name} looks blank ({summary})"]), summary


def main() -> None:
    if not (HTML / "index.html").is_file():
        sys.exit(f"no book at {HTML}: build it first with scripts/build_book.py")
    browser = chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems = []
    for name, (file, height, min_images, must_contain) in PAGES.items():
        page = HTML / file
        if name == "index":  # a redirect: the content is on the page it points to
            target = re.search(r'url=([^"]+)"', page.read_text("utf-8"))
            content = HTML / target.group(1) if target else page
        else:
            content = page
        problems += check_html(content, min_images, must_contain)
        shot = SHOTS / f"{name}.png"
        screenshot(browser, page, shot, height)
        found, summary = crop_and_check(shot)
        problems += found
        print(f"{name}: {shot.relative_to(ROOT)} ({summary})")
    for name in NOTEBOOK_PAGES:
        found = check_notebook_page(name)
        problems += found
        print(f"{name}: reproduce line, collapsed inputs, no NaN, no machine path: "
              + ("ok" if not found else f"{len(found)} problem(s)"))
    if problems:
        sys.exit("book check failed:\n  " + "\n  ".join(problems))
    print("book check passed")


if __name__ == "__main__":
    main()
