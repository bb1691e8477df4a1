"""`byenatos` with no arguments opens the app; without the gui extra it says how to get it."""

from __future__ import annotations

import sys

from app.cli.main import EXIT_ERROR, run


def test_no_arguments_launches_the_desktop_app(monkeypatch, home):
    calls = []
    monkeypatch.setattr("app.ui.main.run", lambda argv=None: calls.append(argv) or 0)
    assert run([]) == 0
    assert calls == [None]


def test_without_the_gui_extra_it_says_how_to_install_it(monkeypatch, capsys, home):
    monkeypatch.setitem(sys.modules, "qasync", None)  # as if the gui extra were not installed
    assert run([]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "pip install 'byenatos[gui]'" in err and "byenatos serve" in err
