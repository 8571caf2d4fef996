"""`webrt build-site`: a self-contained static folder with the chat page, the JS shell, its npm
dependencies and the artifacts, that works from any static host and from any sub-path.

    SITE/index.html                 the chat page (web/demo/index.html, rendered)
    SITE/site.json                  the models, the app folder, and an SRI hash of every file
    SITE/app.<hash>/                web/*.js, web/demo/*, vendor/ (the npm dependencies)
    SITE/models/<name>.<hash>/      each artifact, as docs/ARTIFACT.md describes it (with its tuning DB,
                                    `tuning.json`, when it has one)

Folder names carry a content hash (16 hex digits of SHA-256: of the app's files, of an artifact's
manifest, which holds every file's SHA-256), so a changed file always has a new URL and a browser or
CDN may cache every hashed URL forever. index.html and site.json keep their names and are
revalidated. URLs are relative everywhere, and nothing refers to another origin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

import jinja2

from . import __version__
from .artifact import read_manifest, wasm_builds
from .errors import WebrtError
from .output_paths import check_output_folder
from .server import NODE_MODULES, WEB_DIR

SITE_FORMAT = "webrt-site"
SITE_FORMAT_VERSION = 1
HASH_CHARS = 16
# The shell's npm dependencies, as ES modules: bare specifier -> (file under node_modules, name in the
# app folder). Renamed to .js: plain static hosts may not know .mjs, and module scripts need a JS type.
VENDOR = {
    "@huggingface/tokenizers": ("@huggingface/tokenizers/dist/tokenizers.mjs", "vendor/tokenizers.js"),
    "@huggingface/jinja": ("@huggingface/jinja/dist/index.js", "vendor/jinja.js"),
    "@mlc-ai/web-xgrammar": ("@mlc-ai/web-xgrammar/lib/index.js", "vendor/xgrammar.js"),  # structured output
    "marked": ("marked/lib/marked.esm.js", "vendor/marked.js"),  # the chat page's Markdown
    "dompurify": ("dompurify/dist/purify.es.mjs", "vendor/dompurify.js"),  # and its sanitizer
}
TEMPLATE = "demo/index.html"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sri(data: bytes) -> str:
    """A Subresource Integrity value, as <script integrity> and import maps take it."""
    return "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()


def app_files() -> dict[str, bytes]:
    """The files of the app folder: the JS shell, the chat page's modules and style, the npm deps."""
    files = {p.name: p.read_bytes() for p in sorted(WEB_DIR.glob("*.js"))}
    for path in sorted((WEB_DIR / "demo").iterdir()):
        if path.suffix in (".js", ".css"):
            files[f"demo/{path.name}"] = path.read_bytes()
    for specifier, (source, name) in VENDOR.items():
        path = NODE_MODULES / source
        if not path.is_file():
            raise WebrtError(f"{specifier} is not installed ({path} is missing): run `npm ci` in the webrt folder")
        files[name] = path.read_bytes()
    return files


def content_hash(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + sha256(files[name]).encode() + b"\0")
    return digest.hexdigest()[:HASH_CHARS]


def artifact_files(folder: Path, manifest: dict) -> list[dict]:
    """Every file the manifest names, with the size and hash it records."""
    listed = [*manifest["weights"]["shards"], *manifest.get("files", [])]
    listed += [{"file": k["file"], "sha256": k["sha256"]} for k in manifest["kernels"].values()]
    for kernel_set in manifest.get("kernel_sets", {}).values():  # q4f16's f16 kernels
        listed += [{"file": k["file"], "sha256": k["sha256"]} for k in kernel_set["kernels"].values()]
    listed += wasm_builds(manifest)
    unique = {entry["file"]: entry for entry in listed}  # identical kernels share a file
    for name in unique:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise WebrtError(f"{folder}/manifest.json names the file {name!r} outside the artifact: recompile it")
    return list(unique.values())


def copy_artifact(folder: Path, dest: Path) -> dict[str, bytes]:
    """Copy the manifest and the files it names (nothing else) into dest, checking each hash on the
    way: a damaged artifact is refused here rather than published. Returns {relative name: bytes}."""
    manifest_bytes = (folder / "manifest.json").read_bytes()
    copied = {"manifest.json": manifest_bytes}
    for entry in artifact_files(folder, json.loads(manifest_bytes)):
        source = folder / entry["file"]
        try:
            data = source.read_bytes()
        except OSError as err:
            raise WebrtError(f"{source} cannot be read ({err.strerror}): compile the artifact again") from None
        if sha256(data) != entry["sha256"]:
            raise WebrtError(f"{source} does not match the SHA-256 in its manifest: compile the artifact again")
        copied[entry["file"]] = data
    for name, data in copied.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(data)
    return copied


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "model"


def render_page(app: str, files: dict[str, bytes], template: str = TEMPLATE, script: str = "demo/chat.js",
                modules: dict[str, bytes] | None = None, **context) -> bytes:
    """index.html (or another page of the site: template, its module script): the app folder, an
    import map for the npm dependencies (and integrity for every module the page imports: the app's,
    and modules, {site path: bytes}, outside it), and a Content-Security-Policy that allows this
    origin only."""
    importmap = json.dumps({
        "imports": {spec: f"./{app}{name}" for spec, (_, name) in VENDOR.items()},
        "integrity": {**{f"./{app}{name}": sri(data) for name, data in files.items() if name.endswith(".js")},
                      **{f"./{path}": sri(data) for path, data in (modules or {}).items()}},
    }, indent=1)
    csp = "; ".join([
        "default-src 'self'",
        # the import map is the page's only inline script: allowed by its hash; wasm needs compiling
        f"script-src 'self' 'wasm-unsafe-eval' '{sri(importmap.encode())}'",
        "style-src 'self'", "img-src 'self' data:", "connect-src 'self'", "worker-src 'self'",
        "object-src 'none'", "base-uri 'none'", "form-action 'none'",
    ])
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(WEB_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    page = env.get_template(template).render(
        app=f"./{app}", importmap=importmap, csp=csp,
        integrity={"css": sri(files["demo/chat.css"]), "js": sri(files[script])}, **context)
    return page.encode()


def check_site_destination(out: Path) -> None:
    """Refuse a site folder before any work: a file, a folder of someone else's files, or a place
    that cannot be written."""
    check_output_folder(out, "site.json", SITE_FORMAT, "site")


def has_chat_template(artifact: Path) -> bool:
    """Whether the artifact's tokenizer files carry a chat template."""
    if (artifact / "chat_template.jinja").is_file():
        return True
    try:
        config = json.loads((artifact / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(config.get("chat_template"))


def build_site(artifacts: list[Path], out: Path, python: bool = False) -> Path:
    """Write the site for these artifact folders into out (replacing an older site there); with
    python, also the Python page, Pyodide and the webrt_web wheel (python_page.py)."""
    if not artifacts:
        raise WebrtError("give at least one artifact folder (written by `webrt compile`)")
    check_site_destination(out)
    manifests = [read_manifest(folder) for folder in artifacts]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        integrity = {}
        app_source = app_files()
        app = f"app.{content_hash(app_source)}/"
        for name, data in app_source.items():
            (staging / app / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / app / name).write_bytes(data)
            integrity[app + name] = sri(data)

        models = []
        for folder, manifest in zip(artifacts, manifests):
            digest = sha256((folder / "manifest.json").read_bytes())[:HASH_CHARS]
            path = f"models/{slug(folder.resolve().name)}.{digest}/"
            if any(m["path"] == path for m in models):
                continue  # the same artifact given twice
            copied = copy_artifact(folder, staging / path)
            integrity.update({path + name: sri(data) for name, data in copied.items()})
            models.append({
                "name": manifest["model"]["name"], "path": path,
                "quantization": manifest["model"].get("quantization", "f32"),
                "context_window": manifest["model"]["config"].get("context_window"),
                # a base model (no chat template) gets a completion box instead of a chat
                "chat": has_chat_template(folder),
                "task": manifest["model"].get("task", "text-generation"),  # "embedding": search.html's
                "wasm": manifest.get("wasm") is not None,
                "tuning_db": (manifest.get("tuning") or {}).get("db"),
                # what a visit downloads on wasm: the weights, the tokenizer files and one wasm build
                "download_bytes": sum(f["bytes"] for f in [*manifest["weights"]["shards"], *manifest.get("files", [])])
                + (manifest["wasm"]["bytes"] if manifest.get("wasm") else 0),
            })

        page = render_page(app, app_source)
        (staging / "index.html").write_bytes(page)
        integrity["index.html"] = sri(page)
        site = {"format": SITE_FORMAT, "format_version": SITE_FORMAT_VERSION,
                "created_by": {"webrt": __version__}, "app": app, "models": models}
        if python:
            from .python_page import write_python_page

            site["python"], written = write_python_page(staging, app, app_source)
            integrity.update(written)
        if any(m["task"] == "embedding" for m in models):
            from .search_page import PAGE, write_search_page

            site["search"] = {"page": PAGE}
            integrity.update(write_search_page(staging, app, app_source))
        site["integrity"] = dict(sorted(integrity.items()))
        (staging / "site.json").write_text(json.dumps(site, indent=1) + "\n")
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _replace(staging: Path, out: Path) -> None:
    """Move the finished site into place; an older site there goes only once the new one is whole."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(old / out.name)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)
