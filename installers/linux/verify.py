"""Install the .deb into a fresh root, run the installed app, uninstall, and check each step.

    installers/linux/verify.sh [--build] [--deb dist/byenatos_X_amd64.deb] [--runs 3]

Standard library only (plus the plain lists in installers/bundle.py). No container:
`dpkg --root` installs into a temporary root with its own package database (the package has no
maintainer scripts, so nothing has to run inside that root). The user's home is a temporary
folder too. Checks: `--version`; `serve` answers /api/health and /v1/models (with an app token);
the window opens offscreen and on Xvfb; chats through `serve` reach a fake OpenAI upstream
(pass-through), a fake Gemini through LiteLLM, and a tiny GGUF in llama.cpp in-process;
an agent spawned on `serve` resumes after the daemon is killed with SIGKILL mid-run, with no
step made twice; an agent calls a stdio MCP server's tool (mcp-server-time); the bundled embedding model loads with no network (`unshare -rn`) and vectors get computed on
numpy (no onnxruntime in the bundle); `dpkg -r` removes every installed file and leaves the
user's data.
Prints the figures README.md quotes (bundle size, start-up to window shown, to serve ready).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from installers.bundle import QT_PLATFORMS_LINUX

ROOT = Path(__file__).resolve().parent.parent.parent
FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  {'ok ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        FAILURES.append(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_env(home: Path) -> dict[str, str]:
    """A fresh user: own HOME, no BYENATOS_* or XDG_* from the developer's shell, file secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BYENATOS_", "XDG_", "PYTHON", "QT_"))}
    env.update(HOME=str(home), BYENATOS_SECRETS="file", LANG="C.UTF-8")
    return env


def wait_line(proc: subprocess.Popen, prefix: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"exited (code {proc.wait()}) before printing {prefix!r}")
        if line.startswith(prefix):
            return line
    raise TimeoutError(prefix)


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def install(deb: Path, root: Path) -> None:
    admin = root / "var" / "lib" / "dpkg"
    for d in ("updates", "info", "triggers"):
        (admin / d).mkdir(parents=True, exist_ok=True)
    (admin / "status").touch()
    # --force-depends: the fresh root has no system libraries registered; the host provides them.
    subprocess.run(
        ["dpkg", f"--root={root}", "--force-depends", "--force-not-root", "-i", str(deb)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def serve_run(exe: Path, env: dict[str, str], token: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", "0", "--no-scan"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = wait_line(proc, "ByenatOS gateway on").split()[3]
        status, _ = get(f"{url}/v1/models", token)
        ready = time.perf_counter() - t0
        check(status == 200, f"/v1/models answers 200 ({status})")
        status, body = get(f"{url}/api/health")
        check(status == 200, f"/api/health answers 200 ({status}: {body[:80]!r})")
    finally:
        check(stop(proc) == 0, "serve exits cleanly on SIGTERM")
    return ready


def window_run(exe: Path, env: dict[str, str], display: str | None = None) -> float:
    """Offscreen Qt, or the xcb plugin on a real X server when `display` is given."""
    genv = {**env, "BYENATOS_ANNOUNCE_SHOWN": "1"}
    genv.update({"DISPLAY": display} if display else {"QT_QPA_PLATFORM": "offscreen"})
    where = f"on X11 ({display})" if display else "offscreen"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(exe)], env=genv, text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        wait_line(proc, "BYENATOS_SHOWN")
        shown = time.perf_counter() - t0
        check(True, f"the window opened {where} ({shown * 1000:.0f} ms)")
    finally:
        check(stop(proc) == 0, "the app exits cleanly on SIGTERM")
    return shown


def post(url: str, token: str, body: dict) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=180) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"raw": raw[:200].decode("utf-8", "replace")}


def write_tiny_gguf(folder: Path) -> Path | None:
    """The test suite's tiny random-weight llama (0.2 MB), when its writer can be imported."""
    try:
        sys.path.insert(0, str(ROOT))
        from tests.fakes.gguf_models import write_tiny_llama_gguf
    except ImportError as e:  # the gguf (or pytest) package is not in this venv
        print(f"  (no GGUF writer here: {e}; the in-process llama.cpp check is skipped)")
        return None
    return write_tiny_llama_gguf(folder / "verify-tiny.gguf")


def chats(exe: Path, env: dict[str, str], home: Path, token: str) -> None:
    """Chat through the installed `serve`: OpenAI pass-through to a fake upstream, LiteLLM's Gemini
    route to a fake Gemini (LiteLLM as bundled, without its Rust core), a tiny GGUF in llama.cpp."""
    from installers.linux import fake_upstream as fake

    with fake.FakeCloud() as cloud:
        cenv = {**env, "VERIFY_GEMINI_KEY": fake.GEMINI_KEY}
        models = {}
        add = subprocess.run(
            [str(exe), "models", "add", "verify-openai", "--kind", "openai", "--url", f"{cloud.url}/v1"],
            env=cenv,
            capture_output=True,
            text=True,
        )
        check(
            add.returncode == 0,
            f"models add an OpenAI-compatible upstream (rc {add.returncode}: {add.stdout.strip()[:120]})",
        )
        models[f"verify-openai/{fake.OPENAI_MODEL}"] = fake.OPENAI_REPLY
        add = subprocess.run(
            [str(exe), "models", "add", "gemini", "--url", f"{cloud.url}/v1beta", "--key-env", "VERIFY_GEMINI_KEY",
             "--model", fake.GEMINI_MODEL, "--no-check"],
            env=cenv,
            capture_output=True,
            text=True,
        )  # fmt: skip
        check(
            add.returncode == 0,
            f"models add gemini, a LiteLLM route (rc {add.returncode}: {add.stderr.strip()[:120]})",
        )
        models[f"gemini/{fake.GEMINI_MODEL}"] = fake.GEMINI_REPLY
        if write_tiny_gguf(home / ".local" / "share" / "byenatos" / "models") is not None:
            subprocess.run(
                [str(exe), "models", "scan"], env=cenv, capture_output=True, text=True, timeout=120
            )
            listed = subprocess.run(
                [str(exe), "models", "list", "--json"], env=cenv, capture_output=True, text=True
            )
            local = [
                m for m in json.loads(listed.stdout or "[]") if str(m.get("id", "")).startswith("local/")
            ]
            check(bool(local), f"models scan found the tiny GGUF ({[m.get('id') for m in local]})")
            for m in local:
                models[m["id"]] = None  # random weights: any text, exactly max_tokens of it
        proc = subprocess.Popen(
            [str(exe), "serve", "--port", "0", "--no-scan"],
            env=cenv,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = wait_line(proc, "ByenatOS gateway on").split()[3]
            for model, reply in models.items():
                body = {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 8}
                status, answer = post(f"{url}/v1/chat/completions", token, body)
                choice = (answer.get("choices") or [{}])[0]
                text = (choice.get("message") or {}).get("content") or ""
                if reply is None:
                    ok = (
                        status == 200 and bool(text) and answer.get("usage", {}).get("completion_tokens") == 8
                    )
                else:
                    ok = status == 200 and text == reply
                check(ok, f"chat through serve with {model} ({status}: {text[:60]!r})")
        finally:
            check(stop(proc) == 0, "serve exits cleanly on SIGTERM")
        check(
            "/v1/chat/completions" in cloud.paths
            and any(p.startswith(f"/v1beta/models/{fake.GEMINI_MODEL}:generateContent") for p in cloud.paths),
            f"both chats reached the fake upstream ({sorted(set(cloud.paths))})",
        )


AGENT_FILE = """
name = "verify-agent"
instructions = "List your working folder twice, then answer."
model = "verify-agents/verify-agent"
tools = ["file_list"]
"""


def durable_agent(exe: Path, env: dict[str, str], home: Path) -> None:
    """An agent run from the installed bundle: spawned on `serve`, the daemon killed with SIGKILL
    while the agent's second model call waits, `serve` started again: the agent resumes from its
    last completed step (its first model call is not made again, its tool call not repeated) and
    ends done."""
    from installers.linux import fake_upstream as fake

    agent_file = home / "verify-agent.toml"
    agent_file.write_text(AGENT_FILE)
    with fake.FakeCloud() as cloud:
        subprocess.run(
            [str(exe), "models", "add", "verify-agents", "--kind", "openai", "--url", f"{cloud.url}/v1",
             "--model", fake.AGENT_MODEL, "--no-check"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        serve = ["serve", "--port", "0", "--no-scan"]
        proc = subprocess.Popen([str(exe), *serve], env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_line(proc, "ByenatOS gateway on")
            run = subprocess.run(
                [str(exe), "agents", "run", str(agent_file), "list", "it", "--json"],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            check(run.returncode == 0, f"agents run FILE on serve (rc {run.returncode}: {run.stderr.strip()[:160]})")
            pid = json.loads(run.stdout or "{}").get("pid")
            held = cloud.holding.wait(120)
            check(held, "the agent made its first tool call and asked its model again")
        finally:
            proc.kill()  # SIGKILL: no shutdown of the durable engine
            proc.wait()
        cloud.release.set()
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(exe), *serve], env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_line(proc, "ByenatOS gateway on")
            subprocess.run(  # until the agent ends
                [str(exe), "agents", "logs", str(pid), "--follow"],
                env=env, capture_output=True, text=True, timeout=180,
            )  # fmt: skip
            resumed = time.perf_counter() - t0
            listed = subprocess.run([str(exe), "agents", "ps", "--all", "--json"], env=env, capture_output=True,
                                    text=True)  # fmt: skip
            procs = {p["pid"]: p for p in json.loads(listed.stdout or "[]")}
            end = procs.get(pid, {})
            check(
                end.get("state") == "done" and end.get("result") == fake.AGENT_REPLY,
                f"after kill -9 and a restart, agent {pid} resumed and ended {end.get('state')!r} "
                f"({resumed:.1f} s from restart: {str(end.get('result'))[:60]!r})",
            )
            full = subprocess.run([str(exe), "agents", "logs", str(pid), "--json"], env=env, capture_output=True,
                                  text=True)  # fmt: skip
            entries = [json.loads(line) for line in full.stdout.splitlines() if line.strip()]
            tools_run = [e for e in entries if e.get("kind") == "tool" and "journal" not in e.get("summary", "")]
            check(
                cloud.agent_rounds.count(0) == 1 and len(tools_run) == 2,
                f"no step made twice: first model call made {cloud.agent_rounds.count(0)} time(s), "
                f"{len(tools_run)} tool calls run for 2 asked (model calls by round: {cloud.agent_rounds})",
            )
        finally:
            check(stop(proc) == 0, "serve exits cleanly on SIGTERM after the resumed agent")


MCP_AGENT_FILE = """
name = "verify-mcp"
instructions = "Tell the time in UTC."
model = "verify-agents/verify-mcp"
tools = ["mcp__vtime"]
"""


def mcp_tool_call(exe: Path, env: dict[str, str], home: Path) -> None:
    """The installed bundle as an MCP host: a stdio MCP server nobody here wrote (mcp-server-time,
    from the build's venv) added, tested, allowed for one agent, and called by that agent."""
    from installers.linux import fake_upstream as fake

    server = shutil.which("mcp-server-time") or str(ROOT / ".venv" / "bin" / "mcp-server-time")
    if not Path(server).is_file():
        print("  (mcp-server-time is not installed here: the MCP host check is skipped)")
        return
    add = subprocess.run([str(exe), "mcp", "add", "vtime", "--", server], env=env, capture_output=True, text=True)
    check(add.returncode == 0, f"mcp add a stdio server (rc {add.returncode}: {add.stderr.strip()[:160]})")
    test = subprocess.run([str(exe), "mcp", "test", "vtime"], env=env, capture_output=True, text=True, timeout=120)
    check(test.returncode == 0 and "get_current_time" in test.stdout,
          f"mcp test starts it and lists its tools (rc {test.returncode}: {test.stdout.strip()[-160:]!r})")
    allow = subprocess.run([str(exe), "tools", "allow", "mcp:vtime", "--agent", "verify-mcp"], env=env,
                           capture_output=True, text=True)  # fmt: skip
    check(allow.returncode == 0, f"tools allow mcp:vtime for the agent (rc {allow.returncode})")
    agent_file = home / "verify-mcp.toml"
    agent_file.write_text(MCP_AGENT_FILE)
    with fake.FakeCloud() as cloud:
        subprocess.run(
            [str(exe), "models", "add", "verify-agents", "--kind", "openai", "--url", f"{cloud.url}/v1",
             "--model", fake.MCP_MODEL, "--no-check"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        run = subprocess.run([str(exe), "agents", "run", str(agent_file), "what", "time", "--wait", "--json"],
                             env=env, capture_output=True, text=True, timeout=180)  # fmt: skip
        end = json.loads(run.stdout or "{}") if run.stdout.strip().startswith("{") else {}
        result = str(end.get("result") or "")
        check(run.returncode == 0 and "The MCP server said:" in result and '"timezone":"UTC"' in result.replace(" ", ""),
              f"an agent called {fake.MCP_TOOL} over stdio and answered with it "
              f"(rc {run.returncode}: {result[:120] or run.stderr.strip()[-160:]!r})")


def start_xvfb() -> tuple[subprocess.Popen, str] | None:
    """A private X server for the xcb check (None where Xvfb is not installed)."""
    if shutil.which("Xvfb") is None:
        return None
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        number = fh.readline().strip()  # Xvfb writes the display number once it accepts clients
    if not number:
        proc.kill()
        return None
    return proc, f":{number}"


def offline_embedding(exe: Path, env: dict[str, str], home: Path, bundle: Path) -> None:
    """Add a record with no network at all, then check it got its vector from the bundled model,
    run on numpy (the bundle carries no onnxruntime)."""
    offline = ["unshare", "-rn"] if shutil.which("unshare") and _unshare_works() else []
    if not offline:
        print("  (unshare -rn unavailable: the embedding check runs with the network up)")
    add = subprocess.run(
        [*offline, str(exe), "hinata", "add", "ByenatOS verify: I prefer short answers", "--id", "verify-1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    check(
        add.returncode == 0,
        f"hinata add {'offline ' if offline else ''}(rc {add.returncode}: {add.stderr.strip()[:200]})",
    )
    show = subprocess.run(
        [*offline, str(exe), "psp", "show"], env=env, capture_output=True, text=True, timeout=120
    )
    out = show.stdout
    check(
        "vectors pending: 0" in out and "hybrid (vectors + full text)" in out,
        f"the bundled embedding model computed the vector ({out.splitlines()[:2]})",
    )
    markers = list(home.rglob("embedding-model.txt"))  # the vector index names the model it holds
    name = markers[0].read_text().strip() if markers else "none"
    check(name.endswith("-numpy-w8g32"), f"the vectors came from the numpy runtime ({name})")
    check(not (bundle / "_internal" / "onnxruntime").exists(), "the bundle carries no onnxruntime (left out)")


def _unshare_works() -> bool:
    return subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", action="store_true", help="build the bundle and the .deb first")
    ap.add_argument("--deb", type=Path, help="the package (default: the newest dist/byenatos_*.deb)")
    ap.add_argument("--runs", type=int, default=3, help="start-up timing runs (median reported)")
    ap.add_argument("--max-mb", type=float, default=350, help="fail if the installed bundle is larger")
    ap.add_argument("--keep", action="store_true", help="keep the temporary root for inspection")
    args = ap.parse_args()
    if args.build:
        subprocess.run([sys.executable, "-m", "installers", "build"], check=True, cwd=ROOT)
    debs = [Path(p) for p in glob.glob(str(ROOT / "dist" / "byenatos_*.deb"))]
    deb = args.deb or (max(debs, key=lambda p: p.stat().st_mtime) if debs else None)
    if deb is None or not deb.is_file():
        print("verify: no .deb; run with --build (or python -m installers build)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="byenatos-verify-"))
    root, home = tmp / "root", tmp / "home"
    home.mkdir(parents=True)
    env = user_env(home)
    print(f"verify: {deb.name} ({deb.stat().st_size / 2**20:.0f} MB) into {root}")
    try:
        install(deb, root)
        exe = root / "usr" / "bin" / "byenatos"
        bundle = root / "opt" / "byenatos"
        check(exe.is_file() and bundle.is_dir(), "installed /usr/bin/byenatos and /opt/byenatos")
        plugins = bundle / "_internal" / "PySide6" / "Qt" / "plugins" / "platforms"
        missing = [p for p in QT_PLATFORMS_LINUX if not (plugins / f"libq{p}.so").is_file()]
        check(not missing, f"Qt platform plugins {', '.join(QT_PLATFORMS_LINUX)} ({missing or 'all there'})")
        check((root / "usr/share/applications/byenatos.desktop").is_file(), "installed the .desktop entry")
        check((root / "usr/share/icons/hicolor/scalable/apps/byenatos.svg").is_file(), "installed the icon")
        size = dir_mb(bundle)
        # A regression guard: the agent kernel's durable engine (DBOS: SQLAlchemy, psycopg) took
        # the bundle from 313 to 328 MB here, inside the 350 MB the agent-kernel issue allows.
        check(
            size < args.max_mb,
            f"installed bundle {size:.0f} MB (guard < {args.max_mb:.0f} MB)",
        )
        version = subprocess.run([str(exe), "--version"], env=env, capture_output=True, text=True)
        expected = deb.name.split("_")[1]
        check(version.stdout.strip() == f"byenatos {expected}", f"--version says {version.stdout.strip()!r}")
        reg = subprocess.run(
            [str(exe), "apps", "register", "verify"], env=env, capture_output=True, text=True
        )
        check(reg.returncode == 0, f"apps register (rc {reg.returncode}: {reg.stderr.strip()[:200]})")
        token = reg.stdout.splitlines()[0].strip() if reg.stdout else ""
        ready = [serve_run(exe, env, token) for _ in range(args.runs)]
        # The window's own gateway listens on the configured port: pick a free one for this user.
        cfg = home / ".config" / "byenatos"
        cfg.mkdir(parents=True, exist_ok=True)
        (cfg / "settings.json").write_text(json.dumps({"gateway": {"port": free_port()}}))
        shown = [window_run(exe, env) for _ in range(args.runs)]
        x = start_xvfb()
        if x is None:
            print("  (Xvfb not installed: the xcb check is skipped)")
        else:
            try:
                window_run(exe, env, x[1])
            finally:
                x[0].terminate()
                x[0].wait()
        chats(exe, env, home, token)
        durable_agent(exe, env, home)
        mcp_tool_call(exe, env, home)
        offline_embedding(exe, env, home, bundle)
        data = home / ".local" / "share" / "byenatos"
        before = sorted(p.relative_to(data) for p in data.rglob("*")) if data.is_dir() else []
        subprocess.run(
            ["dpkg", f"--root={root}", "--force-not-root", "-r", "byenatos"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        left = [
            p
            for p in ("opt/byenatos", "usr/bin/byenatos", "usr/share/applications/byenatos.desktop")
            if (root / p).exists()
        ]
        check(not left, f"uninstall removed the app ({left or 'nothing left'})")
        after = sorted(p.relative_to(data) for p in data.rglob("*")) if data.is_dir() else []
        check(
            bool(before) and before == after, f"uninstall kept the user's data ({len(after)} files in {data})"
        )
        print(
            f"figures: bundle {size:.0f} MB installed, .deb {deb.stat().st_size / 2**20:.0f} MB; "
            f"serve ready (first 200 on /v1/models) median {statistics.median(ready) * 1000:.0f} ms; "
            f"window shown (offscreen) median {statistics.median(shown) * 1000:.0f} ms ({args.runs} runs, "
            "warm file cache after the first)"
        )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print(f"verify: {len(FAILURES)} check(s) failed", file=sys.stderr)
        return 1
    print("verify: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
