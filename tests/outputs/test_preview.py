"""The dry-run preview page (`index.html`), checked as a file and in a real browser.

The browser is Debian's chromium, driven headless through its chromedriver with selenium: only
a driver can switch into the sandboxed srcdoc frames and see what their documents hold.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from support import PNG, make_job

from batchmail.cli import main
from batchmail.outputs.preview_page import CSP, write_index

try:
    from selenium.webdriver import Chrome, ChromeOptions
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait
except ImportError:  # the browser tests skip, the others still run
    HAVE_SELENIUM = False
else:
    HAVE_SELENIUM = True

# Planted in recipient data: it reaches the subject, To, the text body, and (through `|safe`,
# as a careless template would do) the HTML body.
EVIL_NAME = "<script>document.title='pwned'</script>"
EVIL_TEAM = "<img src=x onerror=\"document.title='pwned';parent.document.title='pwned'\">"
# The HTML template: a script that would leave a mark in its own frame and retitle the page,
# then a coloured marker block. The script comes first, so once the marker is in the frame's
# document the script has run, if it was ever going to.
HTML_TEMPLATE = (
    "<script>document.write('<p id=\"ran\">ran</p>');parent.document.title='pwned'</script>\n"
    '<div id="marker" style="background:#d0021b;color:#fff;padding:16px;width:240px">'
    "Hello {{ name }} of {{ team|safe }}</div>\n"
)
RECIPIENTS = [
    {"email": "alice@example.com", "name": "Alice", "team": "core"},
    {"email": "bob@example.com", "name": EVIL_NAME, "team": "ops"},
    {"email": "carol@example.com", "name": "Zoë O'Brien & Co", "team": EVIL_TEAM},
]
TITLE = "job: batchmail preview"
RED = "rgba(208, 2, 27, 1)"


def dry_run(folder: Path, recipients: list[dict[str, str]]) -> Path:
    """Preview a job with the real CLI, then write the index; return the preview folder."""
    job = make_job(folder / "job", recipients=recipients)
    (folder / "job" / "templates" / "body.html.j2").write_text(HTML_TEMPLATE, encoding="utf-8")
    out = folder / "out"
    assert main(["run", str(job), "--dry-run", "--out", str(out)]) == 0
    write_index(out, "job", sorted(out.glob("*.eml")))
    return out


@pytest.fixture(scope="module")
def preview(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dry_run(tmp_path_factory.mktemp("preview"), RECIPIENTS)


# --- the file itself ---------------------------------------------------------------------------


def test_index_lists_every_message_escaped(preview: Path) -> None:
    page = (preview / "index.html").read_text(encoding="utf-8")
    assert page.count('<article class="msg"') == 3
    for recipient in RECIPIENTS:
        assert recipient["email"] in page
    assert "<script" not in page.lower()  # neither the template's nor the recipients'
    assert "<img" not in page.lower()
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page
    assert "Zoë O&amp;#39;Brien &amp;amp; Co" in page  # srcdoc: the template's escapes, escaped


def test_page_is_self_contained_and_locked_down(preview: Path) -> None:
    page = (preview / "index.html").read_text(encoding="utf-8")
    head = page[: page.index("</head>")]
    assert head.index('http-equiv="Content-Security-Policy"') < head.index("<style>")
    assert f'content="{CSP}"' in head
    assert "default-src 'none'" in CSP
    assert "script-src" not in CSP  # so scripts fall back to default-src 'none'
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", page)
    frames = re.findall(r"<iframe [^>]*>", page)
    assert len(frames) == 3
    assert all('sandbox=""' in frame and "srcdoc=" in frame for frame in frames)


def test_summary_attachments_and_cap(tmp_path: Path) -> None:
    out = dry_run(tmp_path, RECIPIENTS)
    emls = sorted(out.glob("*.eml"))
    total = sum(path.stat().st_size for path in emls)
    index = write_index(out, "job", (path for path in emls), limit=2)
    page = index.read_text(encoding="utf-8")
    assert page.count('<article class="msg"') == 2
    assert "carol@example.com" not in page
    assert f'title="{total:,} bytes"' in page
    assert "Showing the first 2 of 3 messages. 1 more .eml file is in this folder" in page
    assert page.count('<span class="name">report.pdf</span>') == 2
    assert '<span class="name">chart.bin</span><span class="type">image/png</span>' in page
    assert "content looks like" not in page  # the declared types are the detected ones
    assert not list(out.glob(".*"))  # no temporary file left behind


def test_pages(tmp_path: Path) -> None:
    out = dry_run(tmp_path, RECIPIENTS)
    emls = sorted(out.glob("*.eml"))
    write_index(out, "job", emls, page_size=1)
    assert (out / "index-3.html").exists()
    first = write_index(out, "job", emls, page_size=2)
    assert not (out / "index-3.html").exists()  # left by the longer preview: removed
    one, two = first.read_text(encoding="utf-8"), (out / "index-2.html").read_text(encoding="utf-8")
    assert one.count('<article class="msg"') == 2
    assert two.count('<article class="msg"') == 1
    assert "carol@example.com" in two
    assert '<a rel="next" href="index-2.html">' in one
    assert '<a rel="prev" href="index.html">' in two
    assert "<title>job: batchmail preview (page 2 of 2)</title>" in two
    assert '<article class="msg" id="m3">' in two  # numbered across pages
    empty = write_index(tmp_path, "nobody", [])
    assert "<dd>0</dd>" in empty.read_text(encoding="utf-8")
    assert "<article" not in empty.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Messages the mailer does not build: text only; HTML only with a `cid:` image and a CSV."""
    folder = tmp_path_factory.mktemp("hand-made")
    text_only, html_only = EmailMessage(), EmailMessage()
    for message, subject in ((text_only, "Plain"), (html_only, "Rich")):
        message["To"] = "dan@example.com"
        message["Subject"] = subject
    text_only.set_content("Only text <b>here</b>\n")
    html_only.set_content(
        '<p id="marker">Only html <img id="logo" src="cid:logo%40example.com"></p>\n',
        subtype="html",
    )
    html_only.add_related(
        PNG, "image", "png", cid="<logo@example.com>", filename="logo.png", disposition="inline"
    )
    html_only.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="t.csv")
    paths = [folder / "000001-a.eml", folder / "000002-b.eml"]
    for path, message in zip(paths, (text_only, html_only), strict=True):
        path.write_bytes(message.as_bytes())
    return write_index(folder, "hand made", paths)


def test_messages_with_one_body(hand_made: Path) -> None:
    page = hand_made.read_text(encoding="utf-8")
    assert "No HTML body." in page
    assert "No text body." in page
    assert "<pre>Only text &lt;b&gt;here&lt;/b&gt;\n</pre>" in page
    assert 'srcdoc="&lt;p id=&quot;marker&quot;&gt;Only html &lt;img id=&quot;logo&quot; ' in page
    assert "src=&quot;data:image/png;base64," in page  # the cid: image, shown from the message
    assert '<span class="name">logo.png</span><span class="type">image/png · inline</span>' in page
    assert '<span class="name">t.csv</span><span class="type">text/csv</span>' in page


# --- in a real browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if not HAVE_SELENIUM:
        pytest.skip("selenium is not installed (a test dependency: pip install -e '.[test]')")
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    options = ChromeOptions()
    options.binary_location = chromium  # with the driver's path: no Selenium Manager, no download
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(argument)
    driver = Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()


def frame_documents(driver: WebDriver) -> Iterator[WebDriver]:
    """Switch into each body frame in turn, once its marker is there (frames load lazily)."""
    frames = driver.find_elements(By.TAG_NAME, "iframe")
    for index in range(len(frames)):
        driver.switch_to.default_content()
        frame = driver.find_elements(By.TAG_NAME, "iframe")[index]
        driver.execute_script("arguments[0].scrollIntoView()", frame)
        driver.switch_to.frame(frame)
        WebDriverWait(driver, 5).until(
            expected_conditions.presence_of_element_located((By.ID, "marker"))
        )
        yield driver
    driver.switch_to.default_content()


def test_browser_lists_every_recipient(browser: WebDriver, preview: Path) -> None:
    browser.get((preview / "index.html").as_uri())
    assert browser.title == TITLE
    cards = browser.find_elements(By.CSS_SELECTOR, "article.msg")
    assert len(cards) == 3
    for card, recipient in zip(cards, RECIPIENTS, strict=True):
        assert recipient["email"] in card.text
        assert f"Report for {recipient['name']}" in card.text  # the subject, as text
    assert EVIL_NAME in cards[1].find_element(By.TAG_NAME, "pre").text
    assert browser.find_elements(By.CSS_SELECTOR, "script, img") == []
    summary = browser.find_element(By.CSS_SELECTOR, ".summary").text
    assert "MESSAGES\n3" in summary.upper()


def test_browser_renders_html_bodies(browser: WebDriver, preview: Path) -> None:
    browser.get((preview / "index.html").as_uri())
    seen = []
    for frame in frame_documents(browser):
        marker = frame.find_element(By.ID, "marker")
        assert marker.is_displayed()
        assert marker.size["height"] > 20
        assert marker.value_of_css_property("background-color") == RED
        seen.append(marker.text)
    assert seen[0] == "Hello Alice of core"
    assert seen[1] == f"Hello {EVIL_NAME} of ops"  # autoescaped by the template: shown as text
    assert seen[2].startswith("Hello Zoë O'Brien & Co of")


@pytest.mark.parametrize(
    ("sandbox", "csp"),
    [(True, True), (True, False), (False, True)],
    ids=["sandbox+csp", "sandbox-only", "csp-only"],
)
def test_planted_scripts_do_not_run(
    browser: WebDriver, preview: Path, sandbox: bool, csp: bool
) -> None:
    """Each protection alone stops them; the page ships with both."""
    page = variant(preview, sandbox=sandbox, csp=csp)
    browser.get(page.as_uri())
    assert ran_in_frames(browser) == [False, False, False]
    assert browser.title == TITLE


def test_planted_scripts_run_without_protections(browser: WebDriver, preview: Path) -> None:
    """The control: with neither sandbox nor CSP the same page runs them, so the checks see."""
    browser.get(variant(preview, sandbox=False, csp=False).as_uri())
    assert ran_in_frames(browser) == [True, True, True]
    assert browser.title == "pwned"


def variant(preview: Path, *, sandbox: bool, csp: bool) -> Path:
    page = (preview / "index.html").read_text(encoding="utf-8")
    if not sandbox:
        page = page.replace('sandbox="" ', "")
    if not csp:
        page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    path = preview / f"variant-{int(sandbox)}{int(csp)}.html"
    path.write_text(page, encoding="utf-8")
    return path


def ran_in_frames(driver: WebDriver) -> list[bool]:
    return [bool(frame.find_elements(By.ID, "ran")) for frame in frame_documents(driver)]


def test_browser_shows_inline_images(browser: WebDriver, hand_made: Path) -> None:
    browser.get(hand_made.as_uri())
    widths = [
        frame.find_element(By.ID, "logo").get_property("naturalWidth")
        for frame in frame_documents(browser)
    ]
    assert widths == [1]  # the 1x1 PNG loaded from its data: URL


def test_browser_follows_page_links(browser: WebDriver, tmp_path: Path) -> None:
    out = dry_run(tmp_path, RECIPIENTS)
    browser.get(write_index(out, "job", sorted(out.glob("*.eml")), page_size=2).as_uri())
    browser.find_element(By.CSS_SELECTOR, 'a[rel="next"]').click()
    assert browser.current_url.endswith("/index-2.html")
    assert "carol@example.com" in browser.find_element(By.TAG_NAME, "main").text
