"""Check the built book in a real headless browser (Debian's chromium) and keep screenshots.

    .venv/bin/python scripts/check_book.py

Needs `chromium` (Debian: `apt-get install -y chromium`) and a book built by scripts/build_book.py.
For the index (a redirect to the introduction), the train, replica and results pages it checks that
the HTML has its content and that every <img> it refers to is a non-blank image file (the train page
needs at least its two figures, the replica page six), then loads the page in chromium and saves a
screenshot into book/_build/screenshots/: the first screen of the index, the whole other pages (a tall
window, the empty space below the page cut off). A screenshot must not be blank (enough non-white
pixels, enough grey-level variance). Exits non-zero, naming the page and the problem, on a failure.
"""
from __future__ import annotations

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
    if problems:
        sys.exit("book check failed:\n  " + "\n  ".join(problems))
    print("book check passed")


if __name__ == "__main__":
    main()
