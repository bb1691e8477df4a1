"""`byenatos` with no arguments opens the app; without the gui extra it says how to get it."""

from __future__ import annotations

import sys

import pytest

from app.cli.main import EXIT_ERROR, EXIT_USAGE, run


def test_no_arguments_launches_the_desktop_app(monkeypatch, home):
    calls = []
    monkeypatch.setattr("app.ui.main.run", lambda argv=None, **kw: calls.append((argv, kw)) or 0)
    assert run([]) == 0
    assert calls == [(None, {"host": None, "port": None})]


def test_the_app_takes_the_same_host_and_port_as_serve(monkeypatch, home):
    """Issue 19: `byenatos --port 18999` was refused ("invalid choice")."""
    calls = []
    monkeypatch.setattr("app.ui.main.run", lambda argv=None, **kw: calls.append(kw) or 0)
    assert run(["--port", "18999"]) == 0
    assert run(["--host", "::1", "--port", "0"]) == 0
    assert calls == [{"host": None, "port": 18999}, {"host": "::1", "port": 0}]


def test_a_port_that_is_no_port_is_a_usage_error(capsys, home):
    with pytest.raises(SystemExit) as e:
        run(["--port", "99999"])
    assert e.value.code == EXIT_USAGE
    assert "byenatos: argument --port: a port is 1-65535" in capsys.readouterr().err


def test_host_and_port_are_refused_for_commands_that_do_not_listen(capsys, home):
    with pytest.raises(SystemExit) as e:
        run(["--port", "18999", "models", "list"])
    assert e.value.code == EXIT_USAGE
    assert "--host and --port are for the desktop app and `serve`" in capsys.readouterr().err


def test_without_the_gui_extra_it_says_how_to_install_it(monkeypatch, capsys, home):
    monkeypatch.setitem(sys.modules, "qasync", None)  # as if the gui extra were not installed
    assert run([]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "pip install 'byenatos[gui]'" in err and "byenatos serve" in err
