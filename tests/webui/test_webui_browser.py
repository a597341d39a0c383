"""The web UI in a real browser: Debian's Chromium driven by Playwright against the tiny pipeline.

Run alone with ``pytest -m browser`` (``make test-browser``). Needs ``/usr/bin/chromium`` (``make
system-deps``); Playwright never downloads a browser here. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.webui.conftest import served_ui

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("SPEECHLM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--autoplay-policy=no-user-gesture-required"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_MS = 45_000
expect.set_options(timeout=TIMEOUT_MS)  # 2 shared cores: the first preview / page load can take a while

# Loads a URL into a fresh <audio> element: resolves to its duration, or rejects if the browser cannot play it.
PLAYABLE_JS = """url => new Promise((resolve, reject) => {
    const a = new Audio();
    a.preload = "metadata";
    a.onloadedmetadata = () => resolve(a.duration);
    a.onerror = () => reject(new Error("not playable: " + (a.error && a.error.code)));
    a.src = url;
})"""


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Chromium with `make system-deps` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page_url(tiny_tts):
    with served_ui(tiny_tts, defaults={"seed": 3, "max_new_tokens": 16}) as url:
        yield url


@pytest.fixture
def page(browser, page_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(page_url)
    page.locator("#generate").wait_for()
    yield page
    page.close()


def use_reference(page, clip) -> None:
    """Tick "use a reference", upload ``clip`` and type its transcript."""
    page.locator("#use-ref input").check()
    page.locator("#reference-audio input[type=file]").set_input_files(str(clip))
    page.locator("#reference-text textarea").fill("A short reference clip.")


def test_generate_with_reference_then_error(page, reference_clip):
    page.locator("#text textarea").press_sequentially("Héllo there, web UI.")
    use_reference(page, reference_clip)
    page.locator("#reference-audio audio, #reference-audio [data-testid^=waveform]").first.wait_for()
    expect(page.locator("#preview textarea")).to_have_value("Hello there, web UI.")  # live normalised text

    page.locator("#generate").click()
    download = page.locator("#take-0 a.download-link")
    download.wait_for()
    href = download.get_attribute("href")
    assert download.get_attribute("download").endswith(".wav")
    assert page.evaluate(PLAYABLE_JS, href) > 0  # the browser decodes the file: a playable clip
    spectrogram = page.locator("#spec-0 img")
    spectrogram.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=spectrogram.element_handle())
    summary = page.locator("#summary").inner_text()
    assert "RTF" in summary and "tokens/s" in summary
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webui.png"), full_page=True)

    page.locator("#text textarea").fill("")
    page.locator("#generate").click()
    message = page.locator("#message")
    expect(message).to_contain_text("Cannot generate: text is empty — type the text to speak in the Input text box")
    expect(page.locator("#take-0 a.download-link")).to_have_attribute("href", href)  # the last take stays
    assert "Traceback" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "webui-error.png"), full_page=True)


def test_streaming_plays_while_generating(page):
    if shutil.which("ffmpeg") is None:
        pytest.fail("Gradio encodes streamed audio with ffmpeg: install it with `make system-deps`")
    page.locator("#text textarea").fill("First sentence here. And a second one, streamed.")
    page.locator("#generate-stream").click()
    # The streaming player gets a media source and starts playing before the final take is shown.
    page.wait_for_function("() => { const a = document.querySelector('#stream-audio audio');"
                           " return a && a.src && a.duration > 0 && a.currentTime > 0; }")
    page.locator("#take-0 a.download-link").wait_for()
    assert "first audio after" in page.locator("#summary").inner_text()


# (browser locale, texts the page must show in that language)
LOCALE_LABELS = [
    ("zh-CN", ["输入文本", "生成", "流式生成", "停止", "参考音色", "高级设置", "语速"]),
    ("en-US", ["Input text", "Generate", "Generate streaming", "Stop", "Reference voice", "Advanced", "Speed"]),
    ("ja-JP", ["入力テキスト", "ストリーミング生成", "参照音声", "詳細設定", "話速"]),
    ("es-ES", ["Texto de entrada", "Generar", "Voz de referencia", "Avanzado", "Velocidad"]),
]


@pytest.mark.parametrize("locale, texts", LOCALE_LABELS)
def test_labels_follow_the_browser_language(browser, page_url, locale, texts):
    from speechlm.webui.i18n import table

    context = browser.new_context(locale=locale, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(page_url)
    page.locator("#generate").wait_for()
    expect(page.locator("#generate")).to_have_text(texts[1] if locale != "ja-JP" else "生成")
    for text in texts:
        expect(page.get_by_text(text, exact=True).first).to_be_visible()
    expect(page.locator("#text")).to_contain_text(texts[0])
    expect(page.locator("#normalize")).to_contain_text(table({"zh-CN": "zh-CN", "en-US": "en", "ja-JP": "ja",
                                                              "es-ES": "es"}[locale])["normalize"])
    assert "__i18n__" not in page.locator("body").inner_text()  # no untranslated key shown
    if locale == "zh-CN":
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "webui-zh-CN.png"), full_page=True)
    context.close()


def test_speed_and_a_second_clip_in_the_page(page, reference_clip):
    page.locator("#text textarea").fill("Speed and two clips.")
    use_reference(page, reference_clip)
    page.locator("#more-clips").get_by_text("More clips of the same voice (optional)").click()
    page.locator("#reference-audio-2 input[type=file]").set_input_files(str(reference_clip))
    page.locator("#reference-text-2 textarea").fill("The same clip again.")
    page.locator("#reference-audio-2 audio, #reference-audio-2 [data-testid^=waveform]").first.wait_for()
    page.locator("#speed input[type=number]").fill("1.5")
    page.locator("#speed input[type=number]").press("Enter")
    expect(page.locator("#speed input[type=number]")).to_have_value("1.5")
    page.locator("#generate").click()
    page.locator("#take-0 a.download-link").wait_for()
    assert page.evaluate(PLAYABLE_JS, page.locator("#take-0 a.download-link").get_attribute("href")) > 0
    expect(page.locator("#message")).to_be_hidden()
