"""Write an artifact folder as docs/ARTIFACT.md specifies: manifest.json, weight shards, kernels.

The folder is written under a temporary name beside the destination and renamed into place at the
end, so a failure never leaves a half-written artifact, and an existing artifact is replaced only
once the new one is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from . import __version__
from .errors import WebrtError
from .output_paths import check_output_folder

if TYPE_CHECKING:  # TVM loads only to write an artifact: reading one (run, build-site) stays quick
    from .compile import CompiledModule

FORMAT = "webrt-artifact"
FORMAT_VERSION = 1
SHARD_BYTES = 32 << 20
# Each shard also records the SHA-256 of every BLOCK_BYTES piece, so a page can check a shard as it
# streams in and copy it into place piece by piece, never holding the whole shard (web/loader.js)
BLOCK_BYTES = 4 << 20
WEIGHT_ALIGN = 64   # every tensor starts on a 64-byte boundary inside its shard


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_destination(out: Path) -> None:
    """Refuse an output path before any work: a file, a folder of someone else's files, or a place
    that cannot be written."""
    check_output_folder(out, "manifest.json", FORMAT, "artifact")


def _check_destination(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise WebrtError(f"output {out} is a file: give a folder path for the artifact")
    if out.is_dir() and any(out.iterdir()) and not _is_artifact(out):
        raise WebrtError(f"output folder {out} is not empty and holds no webrt artifact: "
                         "choose an empty or new folder, so nothing of yours is overwritten")


def _is_artifact(folder: Path) -> bool:
    try:
        return json.loads((folder / "manifest.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_manifest(folder: Path) -> dict:
    """The manifest of an artifact folder, refusing anything this webrt cannot load."""
    path = folder / "manifest.json"
    if not folder.is_dir():
        raise WebrtError(f"{folder} is not a folder: give an artifact folder written by `webrt compile`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WebrtError(f"{folder} has no manifest.json: give an artifact folder written by `webrt compile`") from None
    except (OSError, ValueError) as err:
        raise WebrtError(f"{path} cannot be read ({err}): compile the artifact again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise WebrtError(f"{path} is not a webrt artifact manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        made_by = manifest.get("created_by", {}).get("webrt", "an unknown version")
        raise WebrtError(f"{folder} has artifact format version {manifest.get('format_version')} "
                         f"(made by webrt {made_by}); this webrt reads version {FORMAT_VERSION}: recompile it")
    return manifest


def _make_staging(out: Path) -> Path:
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    except OSError as err:
        raise WebrtError(f"cannot write the output folder {out} ({err.strerror}): "
                         "choose a folder you can write to") from None


def write_shards(staging: Path, weights: dict[str, np.ndarray]) -> dict:
    tensors, shards = [], []
    buf = bytearray()

    def flush():
        if buf:
            name = f"weights/shard-{len(shards):04d}.bin"
            (staging / name).write_bytes(buf)
            blocks = [sha256(bytes(buf[at:at + BLOCK_BYTES])) for at in range(0, len(buf), BLOCK_BYTES)]
            shards.append({"file": name, "bytes": len(buf), "sha256": sha256(bytes(buf)), "blocks": blocks})
            buf.clear()

    (staging / "weights").mkdir()
    for name, array in weights.items():
        data = array.tobytes()
        if buf and len(buf) + len(data) > SHARD_BYTES:
            flush()
        buf.extend(b"\0" * (-len(buf) % WEIGHT_ALIGN))
        tensors.append({"name": name, "shape": list(array.shape), "dtype": str(array.dtype),
                        "shard": len(shards), "offset": len(buf), "bytes": len(data)})
        buf.extend(data)
    flush()
    return {"block_bytes": BLOCK_BYTES, "shards": shards, "tensors": tensors}


def largest_binding(manifest: dict) -> dict:
    """{name, bytes} of the largest weight or state tensor: each is bound as one WebGPU buffer, and
    the shell checks them against maxStorageBufferBindingSize before any download."""
    sizes = [(t["name"], t["bytes"]) for t in manifest["weights"]["tensors"]]
    sizes += [(s["name"], int(np.prod(s["shape"])) * np.dtype(s["dtype"]).itemsize) for s in manifest["state"]]
    name, size = max(sizes, key=lambda item: item[1], default=("", 0))
    return {"name": name, "bytes": int(size)}


def device_requirements(compiled: CompiledModule) -> dict:
    kernels = compiled.kernels.values()
    return {
        "maxComputeWorkgroupStorageSize": max(k.workgroup_storage_bytes for k in kernels),
        "maxComputeInvocationsPerWorkgroup": max(k.workgroup_size[0] * k.workgroup_size[1] *
                                                 k.workgroup_size[2] for k in kernels),
        "maxStorageBuffersPerShaderStage": max(len(k.storage_bindings) for k in kernels),
    }


WASM_BUILDS = ("threads", "scalar", "relaxed", "relaxed_threads")  # builds besides the default SIMD one, keys of manifest["wasm"]


def wasm_builds(manifest: dict) -> list[dict]:
    """Every wasm build record ({file, bytes, sha256, features}) the manifest lists."""
    wasm = manifest.get("wasm")
    if not wasm:
        return []
    return [wasm, *(wasm[name] for name in WASM_BUILDS if wasm.get(name))]


TUNING_DB_FILE = "tuning.json"


def _candidates(staging: Path, compiled: CompiledModule, kernels: dict) -> dict:
    """Write the schedule candidates' kernels (marked `candidate`: loaded only when tuning or when
    they won) and return the functions with their `candidates` lists."""
    functions = {name: dict(recipe) for name, recipe in compiled.functions.items()}
    for name, found in (compiled.candidates or {}).items():
        for candidate in found:
            for kname, kernel in candidate.kernels.items():
                entry = kernel.to_json()
                (staging / entry["file"]).write_text(kernel.wgsl)
                kernels[kname] = {**entry, "sha256": sha256(kernel.wgsl.encode()), "candidate": True}
        functions[name]["candidates"] = [c.to_json() for c in found]
    return functions


def _extra_file_bytes(path: Path) -> bytes:
    """An extra file as the artifact ships it: JSON without the indentation the checkpoint's
    writer added, the rest as it is. tokenizers' `save` indents, and a page parses the file into
    one JS string: Gemma 3's tokenizer.json is 33 MB with it and 15 MB without, a 62 MB
    two-byte string against 27 MB, garbage once the tokenizer is built (bench/gemma3_wllama.md)."""
    data = path.read_bytes()
    if path.suffix != ".json":
        return data
    # Python's float repr round-trips, so every number reads back as the value the file held
    return json.dumps(json.loads(data), ensure_ascii=False, separators=(",", ":")).encode()


# What each extra kernel set needs of the device (docs/ARTIFACT.md, kernel sets)
KERNEL_SET_FEATURES = {"f16": ["shader-f16"]}


def _kernel_set(staging: Path, name: str, compiled: CompiledModule, state: dict) -> dict:
    """An extra WebGPU kernel set (`kernel_sets.<name>`): its kernels under kernels/<name>/, its own
    entries, functions and state; the weights are the artifact's."""
    (staging / "kernels" / name).mkdir()
    kernels = {}
    for kname, kernel in compiled.kernels.items():
        entry = {**kernel.to_json(), "file": f"kernels/{name}/{kernel.name}.wgsl"}
        (staging / entry["file"]).write_text(kernel.wgsl)
        kernels[kname] = {**entry, "sha256": sha256(kernel.wgsl.encode())}
    return {"features": KERNEL_SET_FEATURES[name], "requires": device_requirements(compiled),
            "entries": compiled.entries, "functions": compiled.functions, "kernels": kernels,
            "state": [{"name": n, "shape": list(shape), "dtype": dtype} for n, (shape, dtype) in state.items()]}


def write_artifact(out: Path, model: dict, compiled: CompiledModule, weights: dict[str, np.ndarray],
                   extra_files: list[Path] = (), state: dict | None = None, tuning_db: Path | None = None,
                   kernel_sets: dict | None = None) -> Path:
    """state: name -> (shape, dtype) of tensors the shell allocates zeroed and the plan updates;
    tuning_db: a tuning database (web/tuner.js) to ship as the artifact's `tuning.db`;
    kernel_sets: name -> (CompiledModule, state) of extra WebGPU kernel sets (q4f16's "f16")."""
    import tvm

    from .compile.tuning import space_hash

    _check_destination(out)
    staging = _make_staging(out)
    try:
        (staging / "kernels").mkdir()
        kernels = {}
        for name, kernel in compiled.kernels.items():
            entry = kernel.to_json()
            (staging / entry["file"]).write_text(kernel.wgsl)
            entry["sha256"] = sha256(kernel.wgsl.encode())
            kernels[name] = entry
        wasm = None
        if compiled.wasm is not None:
            # the SIMD build is the default; the others hang off it by build name
            builds = {}
            for name, (build, code) in compiled.wasm.items():
                file = "kernels/kernels.wasm" if name == "simd" else f"kernels/kernels-{name}.wasm"
                (staging / file).write_bytes(code)
                builds[name] = {"file": file, "bytes": len(code), "sha256": sha256(code), "features": build.features}
            wasm = {**builds.pop("simd"), **builds}
        functions = _candidates(staging, compiled, kernels)
        files = []
        for path in extra_files:
            data = _extra_file_bytes(path)
            (staging / path.name).write_bytes(data)
            files.append({"file": path.name, "bytes": len(data), "sha256": sha256(data)})
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_by": {"webrt": __version__, "tvm": tvm.__version__},
            "model": model,
            "device": {"backend": "webgpu", "requires": device_requirements(compiled)},
            "wasm": wasm,
            "entries": compiled.entries,
            "functions": functions,
            "kernels": kernels,
            "tuning": {"space": space_hash(functions, kernels), "db": None},
            "weights": write_shards(staging, weights),
            "state": [{"name": name, "shape": list(shape), "dtype": dtype}
                      for name, (shape, dtype) in (state or {}).items()],
            "files": files,
        }
        if kernel_sets:
            manifest["kernel_sets"] = {name: _kernel_set(staging, name, *found) for name, found in kernel_sets.items()}
        manifest["device"]["largest_binding"] = largest_binding(manifest)
        if tuning_db is not None:
            _add_tuning_db(staging, manifest, read_tuning_db(tuning_db))
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
        os.chmod(staging, 0o755)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        return out
    except OSError as err:
        raise WebrtError(f"cannot write the artifact to {out} ({err.strerror}): "
                         "check free space and permissions") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


TUNING_FORMAT = "webrt-tuning"


def read_tuning_db(path: Path) -> bytes:
    """The bytes of a tuning database file (web/tuner.js exportTuningDB), refusing anything else."""
    try:
        data = path.read_bytes()
        db = json.loads(data)
    except FileNotFoundError:
        raise WebrtError(f"--tuning-db {path} does not exist: give a file written by `webrt tune --db-out` "
                         "or exported by the tuner") from None
    except (OSError, ValueError) as err:
        raise WebrtError(f"--tuning-db {path} cannot be read as JSON ({err})") from None
    if not isinstance(db, dict) or db.get("format") != TUNING_FORMAT or not isinstance(db.get("records"), list):
        raise WebrtError(f"--tuning-db {path} is not a webrt tuning database (format {TUNING_FORMAT!r})")
    return data


def _add_tuning_db(folder: Path, manifest: dict, data: bytes) -> None:
    (folder / TUNING_DB_FILE).write_bytes(data)
    manifest["files"] = [f for f in manifest.get("files", []) if f["file"] != TUNING_DB_FILE]
    manifest["files"].append({"file": TUNING_DB_FILE, "bytes": len(data), "sha256": sha256(data)})
    manifest.setdefault("tuning", {"space": None})["db"] = TUNING_DB_FILE


def bake_tuning_db(folder: Path, data: bytes) -> None:
    """Ship a tuning database inside an existing artifact (`webrt tune`): the file, its entry in
    `files`, and `tuning.db`; the manifest is replaced in one rename."""
    manifest = read_manifest(folder)
    _add_tuning_db(folder, manifest, data)
    staged = folder / "manifest.json.partial"
    staged.write_text(json.dumps(manifest, indent=1))
    staged.replace(folder / "manifest.json")
