"""semgen app in a real browser: Playwright drives the system Chromium against a running server.

One server for the module (a generated dataset dir, a torn copy of it, a tiny classifier run);
each test opens a fresh page. Skips only when no Chromium is installed (``.ci/run`` installs
Debian's ``chromium``; Playwright's own browser download is never used). With
``SEMGEN_APP_SCREENSHOTS=DIR`` set, each page is also saved as ``DIR/app_<page>.png`` (the
screenshots in ``docs/img``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

import pytest

from classifier_synth import make_dataset, texture

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: The machine is shared and slow at times: a page step may take a while, never forever.
STEP_MS = 240_000


def _chromium() -> str | None:
    env = os.environ.get("SEMGEN_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in CHROMIUM_NAMES:
        p = shutil.which(name)
        if p:
            return p
    return None


CHROMIUM = _chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium); the app's browser tests "
                                                "need the system browser"),
    pytest.mark.filterwarnings("ignore::Warning:gradio.queueing"),  # Gradio's own pandas deprecations
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The running app and what it serves: ``url``, ``data``, ``torn``, ``run``, ``files``."""
    from semgen.app.ui import build_app, launch
    from semgen.classifier import evaluate_run, train_classifier
    from semgen.generators.procedural.generation import generate
    from semgen.imageio import encode_png

    root = tmp_path_factory.mktemp("app_site")
    data = root / "generated"
    generate("bridge", 3, data, seed=2, size=64, progress=False)
    generate("clean", 2, data, seed=2, size=64, progress=False)
    torn = root / "torn"
    shutil.copytree(data, torn)
    with open(torn / "metadata.jsonl", "ab") as f:
        f.write(b'{"file_name": "images/bridge/x.png", "label": "bri')
    make_dataset(root / "textures", n_per_class=8, seed=0)
    run = root / "run"
    train_classifier(root / "textures", run, arch="mobilenetv3_small_050", size=32, epochs=1, batch_size=16,
                     min_epoch_images=32, num_threads=1, progress=False)
    evaluate_run(run, root / "textures", n_boot=20, num_threads=1)
    import numpy as np

    files = root / "uploads"
    files.mkdir()
    (files / "particle.png").write_bytes(encode_png(texture("particle", np.random.default_rng(5))))
    (files / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2)
    (files / "notes.txt").write_text("not an image\n")
    (files / "huge.png").write_bytes(encode_png(np.random.default_rng(1).integers(0, 255, (400, 400), dtype=np.uint8)))
    demo = build_app(data=[data, torn], runs=[run], max_upload_bytes=60_000, workdir=root / "work")
    port = _free_port()
    launch(demo, port=port, block=False, quiet=True, max_upload_bytes=60_000)
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "data": data, "torn": torn, "run": run, "files": files}
    finally:
        demo.close()


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(site, chromium):
    from playwright.sync_api import expect

    expect.set_options(timeout=STEP_MS)
    pg = chromium.new_page(viewport={"width": 1400, "height": 1000})
    pg.set_default_timeout(STEP_MS)
    pg.goto(site["url"])
    expect(pg.locator("#pg-info")).to_contain_text("sha256")  # the first image is drawn: the page is live
    yield pg
    pg.close()


def _shot(pg, name: str, height: int = 1150) -> None:
    """With SEMGEN_APP_SCREENSHOTS=DIR: the top 1400 x ``height`` px of the page as DIR/app_NAME.png."""
    out = os.environ.get("SEMGEN_APP_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        pg.keyboard.press("Escape")  # no open menu in the picture
        pg.evaluate("window.scrollTo(0, 0)")
        pg.wait_for_timeout(800)  # let the last picture finish drawing
        pg.screenshot(path=str(Path(out) / f"app_{name}.png"), clip={"x": 0, "y": 0, "width": 1400, "height": height},
                      full_page=True)


def _tab(pg, name: str) -> None:
    pg.get_by_role("tab", name=name).click()


def _sha(pg) -> str:
    text = pg.locator("#pg-info").inner_text()
    return text.split("sha256")[1].split()[0]


def test_moving_a_parameter_changes_the_image(page):
    from playwright.sync_api import expect

    pg = page
    before_sha, before_png = _sha(pg), pg.locator("#pg-image img").screenshot()
    pg.get_by_text("imaging (every class)").click()  # open the accordion
    box = pg.locator("#pg-p-contrast input[type=number]")
    box.fill("0.42")
    box.press("Enter")
    expect(pg.locator("#pg-command")).to_contain_text("--set contrast=0.42")
    expect(pg.locator("#pg-info")).not_to_contain_text(before_sha)
    assert pg.locator("#pg-image img").screenshot() != before_png  # the pixels, not only the caption
    expect(pg.locator("#pg-fixed")).to_contain_text("contrast")

    # a choice: the layout's own parameters appear (seed 0 draws a logic layout; lines have edge roughness)
    expect(pg.locator("#pg-p-sigma_nm")).to_be_hidden()
    pg.locator("#pg-p-layout input").click()
    pg.get_by_role("option", name="lines", exact=True).click()
    expect(pg.locator("#pg-p-sigma_nm")).to_be_visible()
    expect(pg.locator("#pg-command")).to_contain_text("--set layout=lines")
    changed = _sha(pg)

    # a parameter outside its limits (typed into a field, or pasted): a message, and the image stays
    dose = pg.locator("#pg-p-dose input")
    dose.fill("1e9")
    dose.press("Enter")
    expect(pg.locator("#pg-status")).to_contain_text("dose=1000000000: out of range [0.5, 100000] e/px")
    assert _sha(pg) == changed
    pg.get_by_text("Paste settings").click()
    pg.locator("#pg-paste textarea").fill("--set psf_sigma_px=0.5:40")
    pg.locator("#pg-apply").click()
    expect(pg.locator("#pg-status")).to_contain_text("psf_sigma_px: range [0.5, 40] outside its limits [0, 8] px")
    assert _sha(pg) == changed

    # re-roll: the next seed, another image, the fixed parameter kept
    pg.locator("#pg-reroll").click()
    expect(pg.locator("#pg-seed input")).to_have_value("1")
    expect(pg.locator("#pg-info")).not_to_contain_text(changed)
    expect(pg.locator("#pg-command")).to_contain_text("--seed 1 --set layout=lines --set contrast=0.42")
    expect(pg.locator("#pg-status")).to_be_empty()

    # export: a profile file and its command
    pg.locator("#pg-export").click()
    expect(pg.locator("#pg-profile-command")).to_contain_text("--profile bridge-profile.yaml")
    expect(pg.locator("#pg-file a").first).to_have_attribute("href", re.compile(r"bridge-profile\.yaml$"))
    _shot(pg, "playground")


def test_dataset_browser_counts_masks_and_bad_folders(page, site):
    from playwright.sync_api import expect

    pg = page
    _tab(pg, "Dataset browser")
    pg.locator("#db-open").click()  # the first --data dir is preselected
    expect(pg.locator("#db-counts")).to_have_text("5 images in 2 classes: clean 2 · bridge 3")
    expect(pg.locator("#db-status")).to_contain_text("(dataset dir): 5 images")
    expect(pg.locator("#db-gallery").get_by_role("button", name="Thumbnail 5 of 5")).to_be_visible()
    pg.locator("#db-gallery").get_by_role("button", name="Thumbnail 1 of 5").click()  # a bridge: mask + box
    expect(pg.locator("#db-detail-note")).to_contain_text("mask: bridge_000000.png")
    expect(pg.locator("#db-record")).to_contain_text("bridge_000000")
    _shot(pg, "browser", height=1500)
    pg.locator("#db-f-class input").click()
    pg.get_by_role("option", name="clean (2)").click()
    expect(pg.locator("#db-counts")).to_have_text("2 images in 1 class: clean 2")
    expect(pg.locator("#db-gallery").get_by_role("button", name="Thumbnail 2 of 2")).to_be_visible()

    # a missing dir, then a manifest with a torn line: messages, and the page keeps working
    folder = pg.locator("#db-folder input")
    folder.fill(str(site["data"] / "nope"))
    pg.locator("#db-open").click()
    expect(pg.locator("#db-status")).to_contain_text("does not exist")
    folder.fill(str(site["torn"]))
    pg.locator("#db-open").click()
    expect(pg.locator("#db-status")).to_contain_text("1 manifest line(s) skipped")
    expect(pg.locator("#db-problems")).to_contain_text("torn last line")
    expect(pg.locator("#db-counts")).to_have_text("5 images in 2 classes: clean 2 · bridge 3")


def test_results_page_shows_a_run(page, site):
    from playwright.sync_api import expect

    pg = page
    _tab(pg, "Results")
    pg.locator("#res-open").click()
    expect(pg.locator("#res-status")).to_contain_text("opened Run: run")
    expect(pg.locator("#res-tables")).to_contain_text("Evaluation (metrics.json)")
    expect(pg.locator("#res-tables")).to_contain_text("particle")
    expect(pg.locator("#res-plots")).to_contain_text("confusion matrix")
    expect(pg.locator("#res-report a").first).to_have_attribute("href", re.compile(r"semgen-report-run\.md$"))
    _shot(pg, "results", height=1900)
    pg.locator("#res-folder input").fill(str(site["data"]))
    pg.locator("#res-open").click()
    expect(pg.locator("#res-status")).to_contain_text("neither an ablation output dir")


def test_classify_an_upload_and_refuse_bad_ones(page, site):
    from playwright.sync_api import expect

    pg = page
    _tab(pg, "Classify")
    upload = pg.locator("#cl-files input[type=file]")
    upload.set_input_files(str(site["files"] / "particle.png"))
    expect(pg.locator("#cl-status")).to_contain_text("classified 1 of 1 file(s)")
    row = pg.locator("#cl-table [role=row][aria-rowindex='2']")  # row 1 is the header
    expect(row).to_contain_text("particle.png")
    cells = [c.strip() for c in row.get_by_role("gridcell").all_inner_texts()]  # file, decision, top, confidence, note
    assert cells[2] in ("bridge", "open", "particle") and 0 < float(cells[3]) <= 1  # top class, confidence
    assert cells[1] in (cells[2], "other")  # the decision: the top class, or rejected to other
    expect(pg.locator("#cl-label")).to_contain_text("%")
    expect(pg.locator("#cl-gallery img").first).to_be_visible()  # the Grad-CAM picture
    _shot(pg, "classify")
    for threshold, decision in (("1", "other"), ("0", cells[2])):  # rejection to other below the threshold
        box = pg.locator("#cl-threshold input[type=number]")
        box.fill(threshold)
        box.press("Enter")
        expect(row.get_by_role("gridcell").nth(1)).to_have_text(decision)

    # a corrupt PNG, a text file and an oversized image: each named, and the good one still classified
    pg.reload()
    expect(pg.locator("#pg-info")).to_contain_text("sha256")
    _tab(pg, "Classify")
    upload.set_input_files([str(site["files"] / n) for n in ("corrupt.png", "notes.txt", "huge.png", "particle.png")])
    status = pg.locator("#cl-status")
    expect(status).to_contain_text("classified 1 of 4 file(s)")
    expect(status).to_contain_text("corrupt.png is not a readable image")
    expect(status).to_contain_text("notes.txt is not a readable image")
    size = (site["files"] / "huge.png").stat().st_size
    expect(status).to_contain_text(f"huge.png is {size / 1e3:.3g} kB; uploads are limited to 60 kB")
