"""The Marketplace: models with filters and fit badges, adding a provider with a connection test,
GGUF downloads with progress into the models folder."""

from __future__ import annotations

from app.kernel.canonical import ModelSpec
from app.ui.views.marketplace import MarketplaceView, fit_badge
from tests.fakes.file_server import FileServer
from tests.ui.conftest import wait_signal

GB = 1024**3


def test_fit_badges():
    local = ModelSpec(id="l/m", name="m", provider="l", local=True, memory_bytes=4 * GB)
    assert fit_badge(local, 16 * GB) == ("fits", "fits")
    assert fit_badge(local, 6 * GB) == ("tight", "tight")
    assert fit_badge(local, 4 * GB) == ("too big", "toobig")
    assert fit_badge(local, 4 * GB, vram_total=24 * GB)[0] == "fits"
    # Only a local model of known size gets a fit; the rest have nothing to fit here.
    assert fit_badge(ModelSpec(id="c/m", name="m", provider="c"), 1) == ("n/a", "")
    assert fit_badge(ModelSpec(id="s/m", name="m", provider="s", local=True), 16 * GB) == ("n/a", "")


async def test_fits_my_machine_keeps_models_that_have_nothing_to_fit(runtime_with_openai, qtbot):
    """A server's models (no size given) and cloud models are "n/a", never "?", and the filter
    keeps them: it showed "0 of 2" before."""
    view = MarketplaceView(runtime_with_openai)
    qtbot.addWidget(view)
    fits = {view.table.item(r, 0).data(256): view.table.item(r, 6) for r in range(view.table.rowCount())}
    assert {item.text() for item in fits.values()} == {"n/a"}
    assert all("does not say how much memory" in item.toolTip() for item in fits.values())
    view.fits_only.setChecked(True)
    assert view.count.text() == "2 of 2 models"


async def test_lists_and_filters_models(runtime_with_openai, qtbot):
    view = MarketplaceView(runtime_with_openai)
    qtbot.addWidget(view)
    assert sorted(view.visible_model_ids()) == ["fake/gpt-fake-large", "fake/gpt-fake-mini"]
    view.search.setText("large")
    assert view.visible_model_ids() == ["fake/gpt-fake-large"]
    view.search.setText("")
    view.where.setCurrentText("Cloud")  # a server on this machine counts as local
    assert view.visible_model_ids() == []
    assert view.count.text() == "0 of 2 models"
    view.where.setCurrentText("Local")
    assert len(view.visible_model_ids()) == 2


async def test_add_provider_tests_the_connection_and_lists_its_models(runtime, openai_upstream, qtbot):
    openai_upstream.models = ["tiny-one", "tiny-two"]
    view = MarketplaceView(runtime)
    qtbot.addWidget(view)
    dialog = view.add_provider()
    assert dialog.preset.currentData() == ""  # an OpenAI-compatible server is the default
    assert dialog.preset.currentText().startswith("OpenAI-compatible")
    dialog.ident.setText("mybox")
    dialog.url.setText(openai_upstream.api_base)
    await dialog.test()
    assert dialog.result_label.text() == "✓ Connected — 2 models found."
    assert {"mybox/tiny-one", "mybox/tiny-two"} <= set(view.visible_model_ids())


async def test_a_missing_or_bad_provider_name_is_asked_for_in_words(runtime, openai_upstream, qtbot):
    view = MarketplaceView(runtime)
    qtbot.addWidget(view)
    dialog = view.add_provider()
    dialog.url.setText(openai_upstream.api_base)
    assert dialog.ident.text() == "" and "e.g. my-server" in dialog.ident.placeholderText()
    assert dialog.test() is None and dialog.save() is None
    assert dialog.result_label.text().startswith("✗ Give this provider a name")
    assert "''" not in dialog.result_label.text()
    dialog.ident.setText("My Box")
    assert dialog.test() is None
    assert "“My Box” cannot be a provider name" in dialog.result_label.text()
    assert "my-box" not in runtime.kernel.registry.provider_ids()  # nothing was tried
    dialog.ident.setText("my-box")
    await dialog.test()
    assert dialog.result_label.text().startswith("✓ Connected")


async def test_an_unreachable_provider_is_explained_and_not_kept(runtime, qtbot, unused_tcp_port):
    view = MarketplaceView(runtime)
    qtbot.addWidget(view)
    dialog = view.add_provider()
    dialog.preset.setCurrentIndex(dialog.preset.findData(""))
    dialog.ident.setText("nobody")
    dialog.url.setText(f"http://127.0.0.1:{unused_tcp_port}/v1")
    await dialog.test()
    assert dialog.result_label.text().startswith("✗ Not reachable")
    assert "nobody" not in runtime.kernel.registry.provider_ids()
    dialog.url.setText("ftp://wrong")
    await dialog.test()
    assert "must start with http" in dialog.result_label.text()


async def test_download_shows_progress_and_lands_in_the_models_folder(runtime, tiny_gguf, qtbot):
    server = await FileServer(tiny_gguf.read_bytes()).start()
    view = MarketplaceView(runtime)
    qtbot.addWidget(view)
    try:
        view.downloads.endpoint = server.url
        view.repo.setText("acme/tiny")
        await view.list_files()
        assert view.files.count() == 1 and "tiny-chat.gguf" in view.files.itemText(0)
        d = view.download_selected()
        await wait_signal(runtime.bridge.downloadProgress, check=lambda e: e.state == "done")
        row = view.rows[d.id]
        assert row.info.text() == "✓ downloaded and verified" and row.bar.value() == 1000
        assert (runtime.kernel.paths.models_dir / "tiny-chat.gguf").read_bytes() == server.data
    finally:
        await view.aclose()
        await server.stop()


async def test_offline_download_listing_is_a_clear_message(runtime, qtbot, unused_tcp_port):
    view = MarketplaceView(runtime)
    qtbot.addWidget(view)
    try:
        view.downloads.endpoint = f"http://127.0.0.1:{unused_tcp_port}"
        view.repo.setText("acme/tiny")
        try:
            await view.list_files()
        except Exception:
            pass
        assert "offline" in view.banner.text
    finally:
        await view.aclose()


async def test_removing_a_downloaded_model_asks_then_deletes_the_file(runtime, tiny_gguf, qtbot):
    import shutil

    from PySide6.QtWidgets import QMessageBox

    target = runtime.kernel.paths.models_dir / "tiny-chat.gguf"
    shutil.copy(tiny_gguf, target)
    runtime.kernel.settings.discovery.scan_default_dirs = False  # only our models folder
    runtime.kernel.settings.discovery.probe_local_servers = False
    runtime.kernel.settings.discovery.gguf_dirs = [str(runtime.kernel.paths.models_dir)]
    await runtime.kernel.scan()
    view = MarketplaceView(runtime)
    qtbot.addWidget(view)
    row = next(r for r in range(view.table.rowCount()) if view.table.item(r, 0).text().startswith("tiny"))
    view.table.selectRow(row)
    view.remove_selected()
    view._confirm.done(QMessageBox.StandardButton.No)
    assert target.exists() and view.remove_task is None  # "No" keeps it
    view.remove_selected()
    view._confirm.done(QMessageBox.StandardButton.Yes)
    await view.remove_task
    assert not target.exists()
    assert view.banner.text == "Deleted tiny-chat.gguf."
