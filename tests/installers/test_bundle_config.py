"""The bundle's contents lists and the files PyInstaller and the installers read (no build here)."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import importlib.util
import plistlib
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.kernel.personal import embed
from installers import bundle

ROOT = Path(__file__).resolve().parents[2]


def test_heavy_and_test_packages_are_excluded() -> None:
    for pkg in ("torch", "pytest", "_pytest", "hypothesis", "onnx", "tkinter", "botocore"):
        assert pkg in bundle.EXCLUDES


def test_onnxruntime_and_the_onnx_graphs_are_left_out() -> None:
    """The bundle's embedding model runs on numpy (test_bundle_runtime.py runs it without onnxruntime)."""
    assert "onnxruntime" in bundle.EXCLUDES
    lists = bundle.HIDDEN_IMPORTS + bundle.COLLECT_BINARIES + bundle.COPY_METADATA + bundle.COLLECT_ALL
    assert not [m for m in lists if m.split(".")[0] == "onnxruntime"]
    assert not [f for f in bundle.EMBEDDING_FILES if f.endswith(".onnx")]
    assert "model.int8.safetensors" in bundle.EMBEDDING_FILES


def test_what_the_app_never_runs_is_left_out() -> None:
    """The size cuts (tests/installers/test_bundle_runtime.py proves the app runs without them)."""
    for mod in (
        "litellm.rust_bridge._native",
        "grpc",
        "opentelemetry.exporter.otlp.proto.grpc",
        "pkg_resources",
    ):
        assert mod in bundle.EXCLUDES
    assert "proxy/**" in bundle.DATA_EXCLUDES["litellm"]
    assert "*.dist-info/RECORD" in bundle.DROP_GLOBS
    assert "PySide6/Qt/plugins/platformthemes/libqgtk3.so" in bundle.DROP_FILES_LINUX


def test_litellms_rust_core_is_left_out_only_where_litellm_runs_without_it(monkeypatch) -> None:
    """LiteLLM 1.109+ imports its Rust core at start-up: a bundle without it has no LiteLLM routes."""
    assert bundle.RUST_CORE in bundle.EXCLUDES
    for runs_without, left_out in ((True, True), (False, False)):
        monkeypatch.setattr(bundle, "litellm_imports_without_rust_core", lambda r=runs_without: r)
        assert (bundle.RUST_CORE in bundle.excludes()) is left_out
        assert set(bundle.excludes()) - {bundle.RUST_CORE} == set(bundle.EXCLUDES) - {bundle.RUST_CORE}


def test_the_rust_core_probe_tells_an_import_that_needs_it(tmp_path, monkeypatch) -> None:
    """The probe itself, on two stand-in litellm packages: one imports the core, one falls back."""
    for needs_it in (True, False):
        pkg = tmp_path / str(needs_it) / "litellm"
        (pkg / "rust_bridge").mkdir(parents=True)
        (pkg / "rust_bridge" / "__init__.py").write_text("")
        (pkg / "rust_bridge" / "_native.py").write_text("")
        body = "from litellm.rust_bridge import _native\n"
        if not needs_it:
            body = f"try:\n    {body}except ImportError:\n    _native = None\n"
        (pkg / "__init__.py").write_text(body)
        monkeypatch.setenv("PYTHONPATH", str(pkg.parent))
        monkeypatch.syspath_prepend(str(pkg.parent))
        bundle.litellm_imports_without_rust_core.cache_clear()
        try:
            assert bundle.litellm_imports_without_rust_core() is not needs_it
        finally:
            monkeypatch.undo()
            bundle.litellm_imports_without_rust_core.cache_clear()


def test_packages_that_are_no_dependency_of_the_app_are_left_out() -> None:
    """What the bundle drops as "not a dependency" must really be outside what pip installs for
    byenatos[gui,local] (the closure of pyproject's requirements over the installed metadata)."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    todo += [Requirement(r) for extra in ("gui", "local") for r in project["optional-dependencies"][extra]]
    closure: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = importlib.metadata.requires(req.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for r in map(Requirement, requires):
            if (
                r.marker is None
                or r.marker.evaluate({"extra": ""})
                or any(r.marker.evaluate({"extra": e}) for e in req.extras)
            ):
                todo.append(r)
    for dist in ("anthropic", "docstring-parser", "fastapi"):
        assert canonicalize_name(dist) not in closure, dist
        assert dist.replace("-", "_") in bundle.EXCLUDES
    assert "litellm" in closure and "chromadb" in closure  # the closure is computed, not empty
    # What the app's own lazily imported engines need ships (DBOS and the MCP SDK import these).
    for dist in ("click", "starlette", "uvicorn", "watchfiles"):
        assert canonicalize_name(dist) in closure, dist
        assert dist not in bundle.EXCLUDES, dist


def test_llama_cpps_multimodal_library_is_loaded_only_by_the_module_left_out() -> None:
    import ast

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        pytest.skip("llama-cpp-python is not installed")
    package = Path(spec.origin).parent
    from installers.elf import dynamic_info

    for lib in (package / "lib").glob("*.so*"):
        if not lib.is_symlink() and "mtmd" not in lib.name:
            assert not [n for n in dynamic_info(lib).needed if "mtmd" in n], lib.name
    for module in package.glob("*.py"):
        if module.name == "mtmd_cpp.py":
            continue
        assert "_libmtmd" not in module.read_text(), module.name  # nothing else loads the library
        for node in ast.parse(module.read_text()).body:  # nor imports its module at import time
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
            assert not [n for n in names if "mtmd_cpp" in n], module.name
    assert "llama_cpp.mtmd_cpp" in bundle.EXCLUDES
    assert "llama_cpp/lib/libmtmd.so*" in bundle.DROP_FILES_LINUX


def test_the_lazy_runtime_imports_are_hidden_imports() -> None:
    for mod in ("tokenizers", "tiktoken_ext.openai_public", "sqlcipher3", "qasync"):
        assert mod in bundle.HIDDEN_IMPORTS
    assert "chromadb" in bundle.COLLECT_ALL
    assert "litellm" in bundle.COLLECT_DATA
    assert "byenatos" in bundle.COPY_METADATA  # `byenatos --version` reads it


def test_no_hidden_import_is_also_excluded() -> None:
    listed = bundle.HIDDEN_IMPORTS + bundle.COLLECT_SUBMODULES + bundle.COLLECT_ALL
    clashes = [m for m in listed if m.split(".")[0] in bundle.EXCLUDES]
    assert clashes == []


def test_every_hidden_import_exists_in_the_build_venv() -> None:
    # In a fresh interpreter: find_spec imports the parent packages, and keyring's import
    # (entry-point scanning) left this test session unable to find other packages' metadata.
    modules = [m for m in bundle.HIDDEN_IMPORTS if m != "uvloop" or sys.platform != "win32"]
    probe = (
        "import importlib.util, sys; print([m for m in sys.argv[1:] if importlib.util.find_spec(m) is None])"
    )
    run = subprocess.run([sys.executable, "-c", probe, *modules], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_the_spec_is_python_that_wires_the_lists() -> None:
    source = (ROOT / "byenatos.spec").read_text()
    ast.parse(source)  # PyInstaller execs it: a syntax error would only show at build time
    for name in ("HIDDEN_IMPORTS", "excludes()", "COLLECT_ALL", "COPY_METADATA", "EMBEDDING_FILES"):
        assert f"bundle.{name}" in source
    assert (ROOT / "installers" / "entry.py").is_file()
    assert (ROOT / "installers" / "rthook_byenatos.py").is_file()


@pytest.fixture(autouse=True)
def _keep_meta_path(monkeypatch):
    """The runtime hook appends its stand-in finder: keep it out of the rest of the session."""
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))


def test_the_runtime_hook_points_the_kernel_at_the_bundled_model(tmp_path, monkeypatch) -> None:
    model = tmp_path / "embedding" / embed.MODEL_NAME
    model.mkdir(parents=True)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    # setenv first so monkeypatch restores the variable the hook is about to set (delenv of an
    # absent variable records nothing to undo, and the hook's value would leak into later tests).
    monkeypatch.setenv(embed.MODEL_DIR_ENV, "unset-by-the-test")
    monkeypatch.delenv(embed.MODEL_DIR_ENV)
    runpy.run_path(str(ROOT / "installers" / "rthook_byenatos.py"))
    assert embed.default_model_dir() == model


def test_the_runtime_hook_leaves_the_users_choice(tmp_path, monkeypatch) -> None:
    (tmp_path / "embedding" / embed.MODEL_NAME).mkdir(parents=True)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    monkeypatch.setenv(embed.MODEL_DIR_ENV, str(tmp_path / "mine"))
    runpy.run_path(str(ROOT / "installers" / "rthook_byenatos.py"))
    assert embed.default_model_dir() == tmp_path / "mine"


def test_the_runtime_hook_stands_in_for_the_otlp_grpc_exporter(monkeypatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    hook = runpy.run_path(str(ROOT / "installers" / "rthook_byenatos.py"))
    finder = sys.meta_path[-1]
    assert isinstance(finder, hook["_OTLPStandIn"])  # last: a real exporter, where present, wins
    exporter = hook["OTLP_TRACE_EXPORTER"]
    for package in ("opentelemetry.exporter", "opentelemetry.exporter.otlp.proto.grpc"):
        spec = finder.find_spec(package)
        assert spec is not None and spec.submodule_search_locations is not None
    for other in ("opentelemetry", "grpc", "opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
        assert finder.find_spec(other) is None
    spec = finder.find_spec(exporter)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(ImportError, match="CHROMA_OTEL_COLLECTION_ENDPOINT"):
        module.OTLPSpanExporter(endpoint="http://collector:4317")


def test_the_bundled_model_files_load_and_embed_on_numpy(tmp_path) -> None:
    """What the bundle carries: the numpy runtime's weights, the tokenizer and meta.json, no graph."""
    src = embed.default_model_dir()
    if not all((src / name).is_file() for name in bundle.EMBEDDING_FILES):
        pytest.skip("embedding model not fetched (scripts/fetch_embedding_model.py)")
    for name in bundle.EMBEDDING_FILES:
        shutil.copy2(src / name, tmp_path / name)
    assert embed.model_present(tmp_path)
    model = embed.EmbeddingModel.load(tmp_path)  # onnxruntime is installed here, but has no graph
    vecs = model.encode(["short answers please"])
    assert vecs.shape == (1, model.dim) and model.runtime == "numpy"
    assert model.name == f"{embed.MODEL_NAME}-{embed.NUMPY_SUFFIX}"
    with pytest.raises(embed.EmbeddingModelMissing, match="fp32"):
        embed.EmbeddingModel.load(tmp_path, precision="fp32")
    with pytest.raises(embed.EmbeddingModelMissing, match="no ONNX graph"):
        embed.EmbeddingModel.load(tmp_path, runtime="onnxruntime")


def test_the_macos_plist_is_tray_only() -> None:
    info = plistlib.loads((ROOT / "installers" / "macos" / "Info.plist").read_bytes())
    assert info["LSUIElement"] is True
    assert info["CFBundleExecutable"] == bundle.NAME
    assert info["CFBundleIdentifier"].count(".") >= 2


def test_the_inno_script_has_start_menu_login_and_uninstall() -> None:
    iss = (ROOT / "installers" / "windows" / "byenatos.iss").read_text()
    assert "{group}\\ByenatOS" in iss  # start-menu entry
    assert "CurrentVersion\\Run" in iss and "Tasks: startatlogin" in iss and "uninsdeletevalue" in iss
    assert "{uninstallexe}" in iss
    assert "MB_DEFBUTTON2" in iss  # deleting the user's data is opt-in, default No


def test_the_workflow_builds_on_all_three_native_runners() -> None:
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "installers.yml").read_text())
    jobs = wf["jobs"]
    runners = " ".join(str(job["runs-on"]) for job in jobs.values()) + str(jobs)
    for os_name in ("ubuntu", "windows", "macos"):
        assert os_name in runners
    steps = [s for job in jobs.values() for s in job["steps"]]
    assert any("upload-artifact" in s.get("uses", "") for s in steps)
    assert any("python -m installers build" in s.get("run", "") for s in steps)


def test_the_desktop_entry_is_valid() -> None:
    path = ROOT / "installers" / "linux" / "byenatos.desktop"
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in desktop entries
    parser.read(path)
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Exec"] == "byenatos" and entry["Icon"] == "byenatos"
    assert entry["Categories"].endswith(";")
    validator = shutil.which("desktop-file-validate")
    if validator:
        result = subprocess.run([validator, str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
