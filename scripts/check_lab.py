"""Check JupyterLab in a real headless browser (Debian's chromium through selenium) and keep a screenshot.

    .venv/bin/python scripts/check_lab.py [--screenshot PATH]

Needs `chromium` and `chromedriver` (Debian: `apt-get install -y chromium chromium-driver`) and the
project installed in the running environment (`pip install -e '.[dev]'`, which installs the kernel
"splip (.venv)"). It starts JupyterLab from this environment on 127.0.0.1 (a free port, a random
token, its config, data, runtime, settings and workspace folders in a temporary folder, autosave
off), opens notebooks/train.ipynb, checks that the notebook shows the kernel "splip (.venv)" and that
the server runs that kernel ("splip"), runs the first cells (the title, the parameters, the imports,
the config; not the training) with Shift+Enter, checks that every code cell among them got an
execution count, that none wrote to stderr or failed, that the imports cell printed its output, and
that the kernel is idle again. Saves a screenshot to book/_build/screenshots/jupyterlab-train.png
(or PATH) that must not be blank. Always stops the server (and with it the kernel) and leaves
notebooks/train.ipynb as it was (restored, and a failure, if JupyterLab changed it). Exits non-zero,
naming the problem, on a failure. Takes 20-40 s.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/train.ipynb"
SHOT = ROOT / "book" / "_build" / "screenshots" / "jupyterlab-train.png"
KERNEL_NAME, KERNEL_DISPLAY = "splip", "splip (.venv)"
RUN_CELLS = 4  # markdown title, parameters, imports, config: seconds, no training
IMPORTS_CELL, IMPORTS_OUTPUT = 2, "Exception reporting mode: Minimal"  # printed there by `%xmode Minimal`
WIDTH, HEIGHT = 1280, 900
MIN_INK = 0.02  # share of pixels that are not near-white (as scripts/check_book.py)
MIN_STD = 10.0  # grey-level standard deviation (0-255)
# JupyterLab user settings written into the temporary settings folder: no autosave (the notebook on
# disk must stay as it is), no news or update check (no network here, no pop-up in the screenshot).
SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


class LabCheckError(RuntimeError):
    pass


def find_browser() -> tuple[str, str]:
    browser = next((p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        sys.exit("no chromium and chromedriver found: install them (Debian: apt-get install -y chromium chromium-driver)")
    return browser, driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, token: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
    return json.loads(body) if body else None


def start_lab(tmp: Path, port: int, token: str, log) -> subprocess.Popen:
    for relative, values in SETTINGS.items():
        path = tmp / "settings" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = dict(os.environ)
    for variable, folder in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                             ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                             ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("IPYTHONDIR", "ipython")):
        (tmp / folder).mkdir(exist_ok=True)
        env[variable] = str(tmp / folder)
    env.pop("JUPYTER_PATH", None)  # the kernel must come from this environment's share/jupyter
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ] + (["--allow-root"] if os.geteuid() == 0 else [])  # containers, CI
    # a session of its own: the server and its kernels can be stopped together, by this process group
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_server(proc: subprocess.Popen, base: str, token: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabCheckError(f"JupyterLab exited with status {proc.returncode} before answering")
        try:
            api(base, token, "/api/status")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise LabCheckError(f"JupyterLab did not answer /api/status within {timeout:.0f} s")


def stop_lab(proc: subprocess.Popen, base: str, token: str) -> None:
    if proc.poll() is None:
        try:  # a clean stop: the server shuts its kernels down first
            api(base, token, "/api/shutdown", method="POST")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):  # whatever of its process group is left (kernels)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        time.sleep(1)
    if proc.poll() is None:
        proc.wait(timeout=10)


def open_browser(browser: str, driver_path: str, profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    return driver


def page_state(driver) -> dict:
    """What the notebook panel shows: kernel name, kernel status, dialogs, the active cell's index,
    and per cell its type, prompt ("[3]:"), output texts and whether an output went to stderr (also
    tracebacks)."""
    return driver.execute_script("""
        const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
        const text = (root, sel) => { const e = root && root.querySelector(sel); return e ? e.textContent.trim() : null; };
        const status = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
        const cells = panel ? [...panel.querySelectorAll('.jp-Notebook .jp-Cell')] : [];
        return {
            active: cells.findIndex(c => c.classList.contains('jp-mod-active')),
            kernel: text(panel, '.jp-KernelName'),
            status: status ? status.getAttribute('data-status') : null,
            dialogs: [...document.querySelectorAll('.jp-Dialog')].map(d => d.textContent.trim()),
            cells: cells.map(c => ({
                code: c.classList.contains('jp-CodeCell'),
                prompt: text(c, '.jp-InputArea-prompt'),
                outputs: [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent.trim()),
                stderr: c.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').length,
            })),
        };
    """)


def wait_until(driver, condition, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = page_state(driver)
        if condition(state):
            return state
        if state["dialogs"]:
            raise LabCheckError(f"a dialog is open while waiting for {what}: {state['dialogs']}")
        if time.monotonic() > deadline:
            cells = [{k: v for k, v in c.items() if k != "outputs"} for c in state["cells"][:RUN_CELLS]]
            raise LabCheckError(f"timed out after {timeout:.0f} s waiting for {what}; the page shows kernel "
                                f"{state['kernel']!r}, status {state['status']!r}, active cell {state['active']}, "
                                f"first cells {cells}")
        time.sleep(0.5)


def run_first_cells(driver) -> dict:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    # select the first cell in command mode: a click on its prompt area (not on a link of its text)
    driver.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell "
                                         ".jp-InputArea-prompt").click()
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    wait_until(driver, lambda s: s["active"] == 0, 10, "the first cell to be selected")
    for index in range(RUN_CELLS):  # Shift+Enter: run the cell, select the next one (one at a time)
        ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        wait_until(driver, lambda s: s["active"] == index + 1, 20, f"Shift+Enter to run cell {index}")

    def done(state: dict) -> bool:
        cells = state["cells"][:RUN_CELLS]
        return state["status"] == "idle" and all(
            not c["code"] or (c["prompt"] or "").strip("[]: ").isdigit() for c in cells)

    return wait_until(driver, done, 120, f"the first {RUN_CELLS} cells to run and the kernel to be idle")


def not_blank(path: Path) -> tuple[bool, str]:
    grey = np.asarray(Image.open(path).convert("L"), dtype=np.float64)  # (H, W)
    ink, std = float((grey < 240).mean()), float(grey.std())
    summary = f"{grey.shape[1]}x{grey.shape[0]}, {ink:.1%} non-white pixels, grey std {std:.1f}"
    return ink >= MIN_INK and std >= MIN_STD, summary


def check(browser: str, driver_path: str, tmp: Path, base: str, token: str, shot: Path) -> list[str]:
    problems = []
    driver = open_browser(browser, driver_path, tmp / "chromium-profile")
    try:
        driver.get(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
        state = wait_until(driver, lambda s: len(s["cells"]) > RUN_CELLS and s["kernel"] == KERNEL_DISPLAY
                           and s["status"] == "idle", 90,
                           f"{NOTEBOOK} to render with the kernel {KERNEL_DISPLAY!r} idle")
        print(f"notebook rendered: {len(state['cells'])} cells, kernel {state['kernel']!r} {state['status']}")
        sessions = [s for s in api(base, token, "/api/sessions") if s.get("path") == NOTEBOOK]
        names = [s["kernel"]["name"] for s in sessions]
        if names != [KERNEL_NAME]:
            problems.append(f"the server runs the kernels {names} for {NOTEBOOK}, expected [{KERNEL_NAME!r}]")
        started = time.monotonic()
        state = run_first_cells(driver)
        cells = state["cells"][:RUN_CELLS]
        code = [c for c in cells if c["code"]]
        print(f"ran the first {RUN_CELLS} cells in {time.monotonic() - started:.1f} s: prompts "
              f"{[c['prompt'] for c in code]}, kernel {state['status']}")
        counts = [int(c["prompt"].strip("[]: ")) for c in code]
        if counts != sorted(counts) or len(set(counts)) != len(counts):
            problems.append(f"execution counts {counts} are not increasing: not every cell ran once, in order")
        for index, cell in enumerate(cells):
            if cell["stderr"]:
                problems.append(f"cell {index} wrote to stderr or failed: {' | '.join(cell['outputs'])[:1000]}")
        if not any(IMPORTS_OUTPUT in output for output in cells[IMPORTS_CELL]["outputs"]):
            problems.append(f"the imports cell (cell {IMPORTS_CELL}) does not show its output {IMPORTS_OUTPUT!r}")
        shot.parent.mkdir(parents=True, exist_ok=True)
        driver.execute_script(  # the imports cell and its output at the top of the screenshot
            "document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell')[arguments[0]]"
            ".scrollIntoView({block: 'start'})", IMPORTS_CELL)
        time.sleep(0.5)
        driver.save_screenshot(str(shot))
        ok, summary = not_blank(shot)
        print(f"screenshot: {shot.relative_to(ROOT) if shot.is_relative_to(ROOT) else shot} ({summary})")
        if not ok:
            problems.append(f"{shot.name} looks blank ({summary})")
    finally:
        driver.quit()
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, default=SHOT, help=f"where to save it (default: {SHOT})")
    shot = parser.parse_args().screenshot.resolve()
    browser, driver_path = find_browser()
    notebook = ROOT / NOTEBOOK
    original = notebook.read_bytes()
    checkpoints = notebook.parent / ".ipynb_checkpoints"
    had_checkpoints = checkpoints.exists()
    started = time.monotonic()
    problems = []
    with tempfile.TemporaryDirectory(prefix="splip-lab-") as tmp_name:
        tmp = Path(tmp_name)
        port, token = free_port(), secrets.token_hex(24)
        base = f"http://127.0.0.1:{port}"
        with open(tmp / "lab.log", "wb") as log:
            proc = start_lab(tmp, port, token, log)
            try:
                wait_for_server(proc, base, token)
                print(f"JupyterLab answers on {base} after {time.monotonic() - started:.1f} s")
                problems += check(browser, driver_path, tmp, base, token, shot)
            except LabCheckError as error:
                problems.append(str(error))
            except Exception as error:  # selenium's errors and the like: a failure to report, not a crash
                problems.append(f"{type(error).__name__}: {str(error).strip()[:2000]}")
            finally:
                stop_lab(proc, base, token)
        if problems:
            print("JupyterLab log (last lines):\n" + "\n".join(
                (tmp / "lab.log").read_text("utf-8", "replace").splitlines()[-30:]), file=sys.stderr)
    if notebook.read_bytes() != original:
        notebook.write_bytes(original)
        problems.append(f"JupyterLab changed {NOTEBOOK} on disk (restored it)")
    if not had_checkpoints and checkpoints.exists():
        shutil.rmtree(checkpoints)
    if problems:
        sys.exit("JupyterLab check failed:\n  " + "\n  ".join(problems))
    print(f"JupyterLab check passed in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
