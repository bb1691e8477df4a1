"""At the window's minimum size (860 x 560) nothing hides behind a scrollbar or is cut off (issue 19):
the model cards stand in one column, the gauges fit, the PSP question field stays usable."""

from __future__ import annotations

import asyncio
import itertools

from PySide6.QtCore import QPoint, QRect, QTimer

from app.kernel.monitor.hardware import GpuSample
from app.ui import tasks
from app.ui.main_window import MainWindow
from tests.ui.test_hardware_view import GB, sample


def inside(widget, container) -> bool:
    """Is the whole of `widget` within `container` (both visible)?"""
    top_left = widget.mapTo(container, QPoint(0, 0))
    return container.rect().contains(QRect(top_left, widget.size()))


async def settle(window) -> None:
    """Let Qt deliver what the layouts posted (geometry, resize events): a zero timer fires after
    the events queued before it."""
    for _ in range(3):
        done = asyncio.get_running_loop().create_future()
        QTimer.singleShot(0, lambda fut=done: fut.done() or fut.set_result(None))
        await done


async def open_window(runtime, qtbot, width: int, height: int) -> MainWindow:
    window = MainWindow(runtime, tray_available=False)
    qtbot.addWidget(window)
    window.resize(width, height)
    window.show()
    await settle(window)
    return window


async def test_at_the_minimum_size_the_cards_stand_in_one_column(runtime_with_openai, qtbot):
    window = await open_window(runtime_with_openai, qtbot, 860, 560)
    assert (window.width(), window.height()) == (860, 560)
    view = window.view("Socket")
    await settle(window)
    grid = view.card_grid
    assert grid.columns == 1
    assert not grid.horizontalScrollBar().isVisible()
    serving = [c for c in view.cards.values() if c.state == "serving"]
    assert len(serving) == 1
    for card in view.cards.values():
        assert card.x() + card.width() <= grid.viewport().width()  # nothing cut off at the right
    assert serving[0].visibleRegion().boundingRect().width() == serving[0].width()
    assert inside(view.socket, view)
    # Nothing in the left column overlaps the next thing down (the socket did the strategy row).
    column = [view.alias_box, view.socket, view.strategy, view.fallbacks]
    for upper, lower in itertools.pairwise(column):
        assert upper.mapTo(view, QPoint(0, upper.height())).y() <= lower.mapTo(view, QPoint(0, 0)).y()
    assert view.socket.height() >= view.socket.minimumHeight()
    await tasks.cancel_all()


async def test_at_a_normal_size_the_cards_use_two_columns(runtime_with_openai, qtbot):
    window = await open_window(runtime_with_openai, qtbot, 1180, 780)
    view = window.view("Socket")
    await settle(window)
    assert view.card_grid.columns == 2
    cards = list(view.cards.values())
    assert cards[0].y() == cards[1].y() and cards[0].x() != cards[1].x()
    await tasks.cancel_all()


async def test_at_the_minimum_size_every_gauge_is_whole(runtime_with_openai, qtbot):
    window = await open_window(runtime_with_openai, qtbot, 860, 560)
    window.show_view("Hardware")
    view = window.view("Hardware")
    gpu = GpuSample(index=0, name="RTX Fake", util_percent=81, vram_used=12 * GB, vram_total=24 * GB,
                    temperature_c=67)
    runtime_with_openai.bridge.emit_event(sample(5.0, gpus=(gpu,)))
    await settle(window)
    for gauge in (view.cpu, view.ram, view.gpu, view.vram, view.temp):
        assert gauge.isVisible() and inside(gauge, view), gauge.title
        assert gauge.width() >= gauge.minimumWidth()
    await tasks.cancel_all()


async def test_at_the_minimum_size_the_psp_question_field_is_wide_enough(runtime_with_openai, qtbot):
    window = await open_window(runtime_with_openai, qtbot, 860, 560)
    window.show_view("Personalization")
    view = window.view("Personalization")
    await settle(window)
    assert view.question.width() >= 220
    assert inside(view.question, view) and inside(view.pause, view)
    assert view.new_rule.width() >= 170
    assert not view.layers.horizontalScrollBar().isVisible()
    await tasks.cancel_all()
