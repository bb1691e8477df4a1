"""Screenshots of the real desktop app under Xvfb with a tray host, for docs/screenshots/.

    python scripts/screenshots.py [--out docs/screenshots]

Needs Xvfb, trayer and ImageMagick's `import` (apt-get install xvfb trayer imagemagick).

The app is started the way a user starts it: the `byenatos` console script (`python -m app`
where there is none), in its own process, on a fresh ByenatOS home, on the Xvfb display with
the trayer tray. So a screenshot shows what `byenatos` gives a user and nothing else: if
personalization (or anything) does not start there, it does not start here either.

Inside that process, `drive()` below runs through the app's automation hook
(BYENATOS_UI_SCRIPT, app.ui.main) once the kernel and the gateway are up. It plays what a
user and their apps would have done by then, through the same doors they use:
- a fake OpenAI-compatible server stands in for a local model server (LM Studio), tiny real
  GGUF files for downloaded models, and fakes of the OpenAI and Anthropic APIs on this machine
  for the cloud providers (their models from the catalogue): nothing leaves the machine, and
  no key is needed;
- apps register over HTTP, send HiNATA records and chat requests through the gateway with
  their tokens (Activity shows those requests, the audit log their reads);
- Core rules are typed into the Personalization view; swaps are made in the Socket view.
Then it visits each view, the tray menu and the assistant popup and captures the screen with
`import -window root`. The only liberty taken: the swap in `socket-swapping.png` is held
before it reaches the kernel, so that the view's own "swapping" state stays on screen long
enough to be captured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT, TRAY = 1280, 800, 30
OUT_ENV = "BYENATOS_SHOTS_OUT"  # where drive() writes the PNGs

RULES = (
    ("Answer in British English, briefly; show code in Python 3.11", True),
    ("I am a backend developer; skip beginner explanations", False),
)
RECORDS = [
    {"highlight": "Migrating the billing service from Flask to FastAPI this sprint", "tag": ["work", "python"]},
    {"highlight": "Violin lesson moved to Thursdays at 17:00", "tag": ["music"]},
    {"highlight": "Prefers pytest fixtures over unittest classes", "tag": ["python", "testing"]},
    {"highlight": "Reading 'Designing Data-Intensive Applications', chapter 7 on transactions", "tag": ["books"]},
]
REPLY = (
    "A **GGUF** file is a single-file format for running LLMs locally (llama.cpp, Ollama, LM Studio):\n\n"
    "- the **weights**, usually quantised (e.g. `Q4_K_M`: ~4.5 bits per weight)\n"
    "- the **tokenizer** and its chat template\n"
    "- **metadata**: architecture, context length, rope settings\n\n"
    "Drop one into ByenatOS's models folder and it shows up in the socket."
)


# -- outside the app: the X server, the tray, the home, `byenatos` ------------------------------
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
        ["trayer", "--edge", "bottom", "--align", "right", "--widthtype", "request", "--height", str(TRAY),
         "--tint", "0x2b2d35", "--transparent", "true", "--alpha", "0", "--SetDockType", "true"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # trayer claims the tray selection; Qt asks for it at start-up
    return xvfb, tray, display


def byenatos() -> list[str]:
    """What a user runs: the console script the install made (python -m app where there is none)."""
    exe = Path(sys.executable).with_name("byenatos.exe" if os.name == "nt" else "byenatos")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "app"]


def make_home() -> Path:
    """A fresh home whose settings keep discovery to what the script adds (this machine's own
    model servers, GGUF folders and *_API_KEY variables stay out of the pictures)."""
    home = Path(tempfile.mkdtemp(prefix="byenatos-shots-"))
    (home / "config").mkdir()
    (home / "config" / "settings.json").write_text(json.dumps(
        {"discovery": {"scan_default_dirs": False, "probe_local_servers": False, "env_keys": False}}))
    return home


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    xvfb, tray, display = start_x()
    home = make_home()
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb", "BYENATOS_HOME": str(home),
           "BYENATOS_SECRETS": "file", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT),
           "BYENATOS_UI_SCRIPT": f"{Path(__file__).resolve()}:drive", OUT_ENV: str(args.out.resolve())}
    for var in [v for v in env if v.endswith("_API_KEY")] + ["WAYLAND_DISPLAY"]:
        env.pop(var, None)
    try:
        return subprocess.run(byenatos(), cwd=ROOT, env=env, timeout=600).returncode
    finally:
        tray.terminate()
        xvfb.terminate()
        shutil.rmtree(home, ignore_errors=True)


# -- inside the app (BYENATOS_UI_SCRIPT): what the user and their apps do ------------------------
async def drive(desktop: Any) -> None:
    from tests.fakes.anthropic_upstream import FakeAnthropic
    from tests.fakes.openai_upstream import FakeOpenAI

    out = Path(os.environ[OUT_ENV])
    fake = FakeOpenAI()  # the "local model server"
    fake.models = [
        {"id": "qwen2.5-7b-instruct", "context_length": 32768},
        {"id": "llama-3.2-3b-instruct", "context_length": 131072},
    ]
    fake.chunk_delay = 0.01
    fake.reply_text = REPLY
    clouds = {"openai": FakeOpenAI(), "anthropic": FakeAnthropic()}
    for upstream in (fake, *clouds.values()):
        await upstream.start()
    try:
        await add_models(desktop.runtime, fake.api_base, {"openai": clouds["openai"].api_base,
                                                          "anthropic": clouds["anthropic"].url},
                         Path(os.environ["BYENATOS_HOME"]) / "downloads")
        await apps_at_work(desktop.runtime, fake)
        await settle(1.0)  # the views hear about the new models through the bridge
        await take(desktop, out)
    finally:
        for upstream in (fake, *clouds.values()):
            await upstream.stop()


def catalogue_names(provider: str, stems: tuple[str, ...]) -> list[str]:
    """For each stem, the catalogue's first model of that family without a date suffix."""
    import re

    from app.kernel.models import catalog

    names = sorted(e.name for e in catalog.known_models(provider) if not re.search(r"\d{8}$", e.name))
    return [next(n for n in names if n.startswith(stem)) for stem in stems]


async def add_models(runtime: Any, fake_url: str, cloud_urls: dict[str, str], gguf_dir: Path) -> None:
    """Providers and models, as the user would have added them (Marketplace, `byenatos models add`)."""
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
    for provider, stems in (("openai", ("gpt-4o-mini", "gpt-4o")), ("anthropic", ("claude-sonnet", "claude-haiku"))):
        wanted = catalogue_names(provider, stems)
        await kernel.add_provider(provider, provider, base_url=cloud_urls[provider], api_key="sk-stand-in")
        specs = [
            catalog.enrich(ModelSpec(id=model_id(provider, e.name), name=e.name, provider=provider), e)
            for e in catalog.known_models(provider)
            if e.name in wanted
        ]
        kernel.registry.upsert_models(provider, specs, replace=True)
    await runtime.swap("openai/gpt-4o", alias="code")


async def apps_at_work(runtime: Any, fake: Any) -> None:
    """Two apps register through the gateway, send what the user cared about and ask questions
    with their tokens, one of them into a rate limit — all over HTTP, as apps do."""
    import httpx

    from tests.fakes.upstream import Fault

    admin = {"Authorization": f"Bearer {runtime.kernel.apps.admin_token()}"}
    async with httpx.AsyncClient(base_url=runtime.gateway_url, timeout=60, trust_env=False) as http:
        notes = await register(http, "notes", ["chat", "hinata:write"], {})
        editor = await register(http, "editor", ["chat", "psp:read"], admin)  # psp:read: the user grants it
        r = await http.post("/api/hinata", json=RECORDS, headers=notes)
        r.raise_for_status()
        for app in ("notes", "editor"):  # the user switched the PSP on for both (Personalization → Apps)
            (await http.put(f"/api/psp/apps/{app}", json={"inject": True}, headers=admin)).raise_for_status()
        questions = ("How should I structure the FastAPI tests?", "Summarise chapter 7 for me",
                     "Draft the migration plan", "What changed in the billing service?", "Any music notes?")
        for i, question in enumerate(questions):  # apps may name a model instead of a socket
            await chat(http, (notes, editor)[i % 2], "lmstudio/qwen2.5-7b-instruct", question)
        fake.fault = Fault(kind="status", status=429, message="Rate limit reached for requests")
        await chat(http, editor, "lmstudio/llama-3.2-3b-instruct", "Rename the handlers")  # no fallback: fails
        fake.fault = None


async def register(http: Any, name: str, scopes: list[str], auth: dict[str, str]) -> dict[str, str]:
    r = await http.post("/api/apps/register", json={"name": name, "scopes": scopes}, headers=auth)
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def chat(http: Any, auth: dict[str, str], model: str, question: str) -> None:
    await http.post("/v1/chat/completions", headers=auth, json={
        "model": model, "stream": True, "messages": [{"role": "user", "content": question}]})


async def snap(path: Path) -> None:
    proc = await asyncio.create_subprocess_exec("import", "-window", "root", str(path))
    await proc.wait()
    print(f"wrote {path}", flush=True)


async def settle(seconds: float = 0.6) -> None:
    """Let the window paint: the app's loop runs Qt's events while this waits."""
    await asyncio.sleep(seconds)


async def until(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"screenshots: {what} never happened")
        await asyncio.sleep(0.05)


async def type_rules(view: Any) -> None:
    """The user types the Core rules into Personalization (Enter adds one)."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    for text, pinned in RULES:
        view.new_pinned.setChecked(pinned)
        QTest.keyClicks(view.new_rule, text)
        QTest.keyClick(view.new_rule, Qt.Key.Key_Return)
        await until(lambda t=text: any(view.rules.item(i).text() == t for i in range(view.rules.count()))
                    or view.banner.text, f"the rule {text!r} in the list")
        if view.banner.text:
            raise RuntimeError(f"screenshots: the Personalization view says: {view.banner.text}")


async def take(desktop: Any, out: Path) -> None:
    from PySide6.QtCore import QPoint

    from app.ui.theme import apply_theme

    runtime, win = desktop.runtime, desktop.window
    runtime.sampler.interval = 0.2
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
        view = win.view(title)
        if title == "Socket":  # the user plugs a model in and drops a fallback into the chain
            await view.swap_to("lmstudio/qwen2.5-7b-instruct")
            view.add_fallback("openai/gpt-4o-mini")
        if title == "Marketplace":
            view.repo.setText("Qwen/Qwen2.5-0.5B-Instruct-GGUF")
        if title == "Personalization":
            if view.refreshing is not None:
                await asyncio.wait([view.refreshing])
            await type_rules(view)
            view.app_box.setCurrentText("notes")
            view.question.setText("how should I structure the FastAPI tests?")
            await view.preview()
            if view.banner.text:
                raise RuntimeError(f"screenshots: the Personalization view says: {view.banner.text}")
        await settle(3.0 if title == "Hardware" else 0.8)
        await snap(out / f"{name}.png")
    # a swap in progress on the socket view: the view's own swap, held before the kernel's
    win.show_view("Socket")
    sv = win.view("Socket")
    hold = asyncio.Event()
    swap = runtime.swap

    async def held(*args: Any, **kw: Any) -> Any:
        await hold.wait()
        return await swap(*args, **kw)

    runtime.swap = held
    swapping = sv.swap_to("openai/gpt-4o-mini")
    await settle(0.45)
    await snap(out / "socket-swapping.png")
    hold.set()
    await swapping
    del runtime.swap  # the method again
    await sv.swap_to("local/tinyllama-1.1b-chat.Q4_K_M")
    await settle(0.5)
    await snap(out / "socket-swapped.png")
    # tray menu
    desktop.tray.rebuild()
    desktop.tray.menu.popup(QPoint(WIDTH - 380, HEIGHT - 20 - desktop.tray.menu.sizeHint().height()))
    await settle(0.8)
    await snap(out / "tray-menu.png")
    desktop.tray.menu.hide()
    # the assistant popup over the window, answered by the "local server" through the gateway
    await runtime.swap("lmstudio/qwen2.5-7b-instruct")
    desktop.popup.open()
    desktop.popup.input.setText("What is a GGUF file?")
    await desktop.popup.ask()
    await settle(0.6)
    await snap(out / "assistant-popup.png")
    desktop.popup.close_popup()
    # dark theme
    apply_theme(desktop.app, "dark")
    win.show_view("Socket")
    await settle(0.8)
    await snap(out / "socket-dark.png")


if __name__ == "__main__":
    sys.exit(main())
