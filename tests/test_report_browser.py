"""The report page in a real browser: headless Chromium parses it, and the charts are drawn.

Needs Chromium from the system packages (Debian/Ubuntu: `apt-get install -y chromium`); skipped
without it.
"""
import shutil
import subprocess

import pytest
from conftest import EXAMPLES
from PIL import Image
from typer.testing import CliRunner

from planner.cli.app import app
from planner.report.charts import TERM_COLORS

pytestmark = pytest.mark.browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((path for path in map(shutil.which, BROWSERS) if path), None)
CHART_IDS = ("memory-plans", "memory-stages", "step-time", "memory-vs-step-time")
WINDOW = (1280, 2400)
BROWSER_TIMEOUT_S = 120

if CHROMIUM is None:
    pytest.skip("Chromium is not installed (apt-get install -y chromium); the browser test needs it",
                allow_module_level=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(app, ["report", str(EXAMPLES / "clusters" / "h100-1node.yaml"),
                                      str(EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml"), "--out", str(out),
                                      "--top", "2"])
    assert result.exit_code == 0, result.output
    return out / "report.html"


def chromium(page, *flags, profile):
    # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
    # A profile of its own per call, so parallel runs do not fight over one.
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", *flags, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=True)


def test_the_browser_finds_every_chart(page, tmp_path):
    dom = chromium(page, "--dump-dom", profile=tmp_path / "profile").stdout
    assert "<title>" in dom and "Best plans" in dom
    for chart in CHART_IDS:
        assert f'<svg id="{chart}"' in dom


def test_the_screenshot_shows_the_charts(page, tmp_path):
    shot = tmp_path / "page.png"
    chromium(page, f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", profile=tmp_path / "profile")
    image = Image.open(shot).convert("RGB")
    assert image.size == WINDOW
    colors = image.getcolors(maxcolors=WINDOW[0] * WINDOW[1])
    assert len(colors) > 50, "the page rendered (almost) blank"
    # The memory charts' bars are drawn in the term colours: the activations bar must be on screen.
    activations = tuple(int(TERM_COLORS["activations"][i:i + 2], 16) for i in (1, 3, 5))
    drawn = sum(count for count, rgb in colors if all(abs(a - b) <= 8 for a, b in zip(rgb, activations)))
    assert drawn > 2000, f"only {drawn} pixels in the activations colour {activations}"
