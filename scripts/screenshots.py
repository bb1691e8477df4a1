"""Screenshots of the real desktop app under Xvfb with a tray host, for docs/screenshots/.

    python scripts/screenshots.py [--out docs/screenshots]

Needs Xvfb, trayer and ImageMagick's `import` (apt-get install xvfb trayer imagemagick).
It starts its own X server and tray, a fake OpenAI-compatible server standing in for a local
model server, tiny real GGUF files and the cloud catalogue, then drives the app's window,
tray menu and assistant popup and captures the screen with `import -window root`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT, TRAY = 1280, 800, 30


def start_x() -> tuple[subprocess.Popen, subprocess.Popen, str]:
    for tool in ("Xvfb", "trayer", "import"):
        if not shutil.which(tool):
            sys.exit(f"screenshots: {tool} is missing (apt-get install xvfb trayer imagemagick)")
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", "1", "-screen", "0", f"{WIDTH}x{HEIGHT + TRAY}x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    display = f":{xvfb.stdout.readline().decode().strip()}"
    env = {**os.environ, "DISPLAY": display}
    tray = subprocess.Popen(
        [
            "trayer",
            "--edge",
            "bottom",
            "--align",
            "right",
            "--widthtype",
            "request",
            "--height",
            str(TRAY),
            "--tint",
            "0x2b2d35",
            "--transparent",
            "true",
            "--alpha",
            "0",
            "--SetDockType",
            "true",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # trayer claims the tray selection; Qt asks for it at start-up
    return xvfb, tray, display


async def setup_kernel(runtime, fake_url: str, gguf_dir: Path) -> None:
    from app.kernel.canonical import ModelSpec, model_id
    from app.kernel.models import catalog
    from tests.fakes.gguf_models import write_tiny_llama_gguf

    kernel = runtime.kernel
    await kernel.add_provider("lmstudio", "openai", base_url=fake_url)
    await kernel.refresh_provider("lmstudio")
    paths = [
        write_tiny_llama_gguf(gguf_dir / "tinyllama-1.1b-chat.Q4_K_M.gguf", context_length=2048),
        write_tiny_llama_gguf(gguf_dir / "phi-3-mini-4k-instruct.Q4_K_M.gguf", seed=3, context_length=4096),
    ]
    await kernel.add_provider("local", "llamacpp", options={"models": [str(p) for p in paths]})
    await kernel.refresh_provider("local")
    for provider, wanted in (
        ("openai", ("gpt-4o", "gpt-4o-mini", "o3-mini")),
        ("anthropic", ("claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022")),
    ):
        await kernel.add_provider(provider, provider, api_key="sk-demo-not-a-real-key")
        specs = [
            catalog.enrich(ModelSpec(id=model_id(provider, e.name), name=e.name, provider=provider), e)
            for e in catalog.known_models(provider)
            if e.name in wanted
        ]
        kernel.registry.upsert_models(provider, specs, replace=True)
    await kernel.socket.swap("default", "lmstudio/qwen2.5-7b-instruct")
    kernel.socket.configure("default", fallbacks=["openai/gpt-4o-mini"])
    await kernel.socket.swap("code", "openai/gpt-4o")
    # a little memory and a few rules, as apps and the user would have left them
    from app.kernel.personal.service import Caller

    personal = kernel.personal
    await personal.ready()
    you = Caller.user()
    await personal.add_rule("Answer in British English, briefly; show code in Python 3.11", True, you)
    await personal.add_rule("I am a backend developer; skip beginner explanations", False, you)
    notes = Caller("notes", frozenset({"hinata:write"}))
    await personal.add([
        {"highlight": "Migrating the billing service from Flask to FastAPI this sprint", "tag": ["work", "python"]},
        {"highlight": "Violin lesson moved to Thursdays at 17:00", "tag": ["music"]},
        {"highlight": "Prefers pytest fixtures over unittest classes", "tag": ["python", "testing"]},
        {"highlight": "Reading 'Designing Data-Intensive Applications', chapter 7 on transactions",
         "tag": ["books"]},
    ], notes)
    kernel.apps.register("notes", ["chat", "hinata:write"])
    kernel.apps.register("editor", ["chat", "psp:read"])
    personal.set_injection("notes", True)
    personal.set_injection("editor", True)


async def snap(path: Path) -> None:
    proc = await asyncio.create_subprocess_exec("import", "-window", "root", str(path))
    await proc.wait()
    print(f"wrote {path}")


async def settle(_app, seconds: float = 0.6) -> None:
    """Let the window paint: the qasync loop runs Qt's events while this waits."""
    await asyncio.sleep(seconds)


async def run(out: Path) -> None:
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QApplication

    from app.kernel.events import RequestFinished
    from app.ui.main import DesktopApp
    from app.ui.runtime import DesktopRuntime
    from tests.fakes.openai_upstream import FakeOpenAI

    qapp = QApplication.instance()
    fake = FakeOpenAI()
    fake.models = [
        {"id": "qwen2.5-7b-instruct", "context_length": 32768},
        {"id": "llama-3.2-3b-instruct", "context_length": 131072},
    ]
    fake.chunk_delay = 0.01
    fake.reply_text = (
        "A **GGUF** file is a single-file format for running LLMs locally (llama.cpp, Ollama, LM Studio):\n\n"
        "- the **weights**, usually quantised (e.g. `Q4_K_M`: ~4.5 bits per weight)\n"
        "- the **tokenizer** and its chat template\n"
        "- **metadata**: architecture, context length, rope settings\n\n"
        "Drop one into ByenatOS's models folder and it shows up in the socket."
    )
    await fake.start()
    runtime = DesktopRuntime(gateway_port=0)
    app = DesktopApp(qapp, runtime)  # the real global hotkey, on the Xvfb display
    main = asyncio.ensure_future(app.main(scan=False))
    await runtime_ready(runtime)
    await setup_kernel(runtime, fake.api_base, Path(tempfile.mkdtemp()))
    await settle(qapp, 1.0)  # the views hear about the new models through the bridge
    runtime.sampler.interval = 0.2
    for i, ms in enumerate((420, 380, 910, 350, 1200, 460, 300)):
        runtime.kernel.events.publish(
            RequestFinished(
                model="lmstudio/qwen2.5-7b-instruct" if i % 3 else "openai/gpt-4o-mini",
                provider="lmstudio",
                app=("notes", "editor", "byenatos-assistant")[i % 3],
                stream=True,
                latency_ms=ms,
                prompt_tokens=120 + i * 40,
                completion_tokens=80 + i * 25,
                cost=0.0 if i % 3 else 0.00042,
                outcome="ok" if i != 4 else "rate_limit_exceeded",
            )
        )
    win = app.window
    win.move(0, 0)
    win.resize(WIDTH, HEIGHT)
    win.bring_to_front()
    for title, name in (
        ("Socket", "socket"),
        ("Marketplace", "marketplace"),
        ("Hardware", "hardware"),
        ("Personalization", "personalization"),
        ("Activity", "activity"),
        ("Settings", "settings"),
    ):
        win.show_view(title)
        if title == "Marketplace":
            view = win.view(title)
            view.repo.setText("Qwen/Qwen2.5-0.5B-Instruct-GGUF")
        if title == "Personalization":
            view = win.view(title)
            view.app_box.setCurrentText("notes")
            view.question.setText("how should I structure the FastAPI tests?")
            await view.preview()
        await settle(qapp, 3.0 if title == "Hardware" else 0.8)
        await snap(out / f"{name}.png")
    # a swap in progress on the socket view
    win.show_view("Socket")
    sv = win.view("Socket")
    sv.socket.set_phase("swapping")
    sv.status.setText("Swapping to gpt-4o-mini (graceful)…")
    await settle(qapp, 0.45)
    await snap(out / "socket-swapping.png")
    await sv.swap_to("local/tinyllama-1.1b-chat.Q4_K_M")
    await settle(qapp, 0.5)
    await snap(out / "socket-swapped.png")
    # tray menu
    app.tray.rebuild()
    app.tray.menu.popup(QPoint(WIDTH - 380, HEIGHT - 20 - app.tray.menu.sizeHint().height()))
    await settle(qapp, 0.8)
    await snap(out / "tray-menu.png")
    app.tray.menu.hide()
    # the assistant popup over the window, answered by the "local server"
    await runtime.swap("lmstudio/qwen2.5-7b-instruct")
    app.popup.open()
    app.popup.input.setText("What is a GGUF file?")
    await app.popup.ask()
    await settle(qapp, 0.6)
    await snap(out / "assistant-popup.png")
    app.popup.close_popup()
    # dark theme
    from app.ui.theme import apply_theme

    apply_theme(qapp, "dark")
    win.show_view("Socket")
    await settle(qapp, 0.8)
    await snap(out / "socket-dark.png")
    app.quit()
    await main
    await fake.stop()


async def runtime_ready(runtime) -> None:
    fut = asyncio.get_running_loop().create_future()
    runtime.gatewayChanged.connect(lambda s: s == "running" and not fut.done() and fut.set_result(None))
    await asyncio.wait_for(fut, 30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    xvfb, tray, display = start_x()
    os.environ.update(
        DISPLAY=display,
        QT_QPA_PLATFORM="xcb",
        BYENATOS_HOME=tempfile.mkdtemp(prefix="byenatos-shots-"),
        BYENATOS_SECRETS="file",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    os.environ.pop("WAYLAND_DISPLAY", None)
    try:
        from PySide6.QtWidgets import QApplication

        from app.ui.loop import make_loop

        qapp = QApplication(["byenatos"])
        qapp.setQuitOnLastWindowClosed(False)
        loop = make_loop(qapp)
        asyncio.set_event_loop(loop)
        with loop:
            loop.run_until_complete(run(args.out))
    finally:
        tray.terminate()
        xvfb.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
