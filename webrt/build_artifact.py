"""`webrt compile` as a list of named stages: checkpoint -> model -> compiled kernels -> artifact."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from .artifact import check_destination, read_tuning_db, write_artifact
from .compile import compile_module
from .compile.int_dot import DEFAULT_INT_DOT, INT_DOT_MODES
from .compile.schedule import SCHEDULES
from .errors import WebrtError
from .default_model import default_model_path
from .importers.gguf_file import open_gguf
from .importers.hf import open_hf_folder
from .importers.sentence_transformers import EncoderCheckpoint, is_encoder_folder, open_encoder_folder
from .build_encoder import compile_encoder
from .models.blocks import GENERATE_INPUTS
from .models.registry import family
from .models.quantized import quantized_weights
from .models.split import DEFAULT_MAX_BINDING_BYTES, split_large_tables
from .quantize import MIXES, MixTypes
from .tokenizer_checks import check_tokenizer_files

# q4f16: q4f32's weights, with a second WebGPU kernel set in float16 activations and KV cache
# (used where the adapter has shader-f16); the mixes: llama.cpp's K-quant recipes (webrt/quantize.py)
QUANTIZATIONS = ("f32", "q4f32", "q4f16", *MIXES)
STATE_PREFIX = "kv_cache."
# The KV cache length when --context-window is not given and the model's context is longer
# (Gemma 3 advertises 32,768 tokens: an f32 cache of that length would be 1.2 GB).
DEFAULT_CONTEXT_WINDOW = 4096


def open_checkpoint(source: Path, workdir: Path):
    """A Hugging Face folder or a .gguf file, by what `source` is."""
    if source.suffix == ".gguf" or source.is_file():
        return open_gguf(source, workdir)
    if is_encoder_folder(source):
        return open_encoder_folder(source)
    return open_hf_folder(source)


def compile_model(source: Path | None, out: Path, quantization: str = "f32", context_window: int | None = None,
                  stage: Callable[[str], None] = lambda name: None, schedule: str = "portable",
                  tuning_db: Path | None = None, tuning_candidates: bool = True,
                  max_binding_bytes: int = DEFAULT_MAX_BINDING_BYTES, int_dot: str = DEFAULT_INT_DOT) -> Path:
    """Compile a Hugging Face folder or GGUF file (default: the default model) into an artifact at
    `out`; `stage` is told each stage's name. context_window caps the KV cache below the model's
    own context length; tuning_db (web/tuner.js format) ships with the artifact. Without
    tuning_candidates the artifact carries only the compile-time schedules: about 3x faster to
    compile (a small model), and nothing for the browser tuner to time. An embedding table or LM
    head with a tensor over max_binding_bytes is split by rows (webrt/models/split.py). int_dot names
    the wasm builds' quantized matmuls that round activations to 16-bit integers for integer dot
    products (webrt/compile/int_dot.py's INT_DOT_MODES; default: Q8_0 GEMVs)."""
    check_destination(out)  # first: a bad output path is refused before any work
    if quantization not in QUANTIZATIONS:
        raise WebrtError(f"quantization {quantization!r} is not supported; supported: {', '.join(QUANTIZATIONS)}")
    if int_dot not in INT_DOT_MODES:
        raise WebrtError(f"--int-dot {int_dot!r} is not known; choose one of: {', '.join(INT_DOT_MODES)}")
    if schedule not in SCHEDULES:
        raise WebrtError(f"schedule {schedule!r} is not known; choose one of: {', '.join(SCHEDULES)}")
    if tuning_db is not None:
        read_tuning_db(tuning_db)  # refused now, not after minutes of compiling
    stage("reading checkpoint")
    with tempfile.TemporaryDirectory(prefix="webrt-compile-") as workdir:
        ckpt = open_checkpoint(source or default_model_path(), Path(workdir))
        check_tokenizer_files(ckpt.tokenizer_files, getattr(ckpt.config, "vocab_size", None))
        if isinstance(ckpt, EncoderCheckpoint):
            return compile_encoder(ckpt, out, quantization, context_window, stage, schedule, tuning_db,
                                   tuning_candidates)
        return _compile(ckpt, out, quantization, context_window, stage, schedule, tuning_db, tuning_candidates,
                        max_binding_bytes, int_dot)


def quantize_weights(ckpt, model) -> dict[str, np.ndarray]:
    """The parts of every quantized matrix (webrt/models/quantized.py): the checkpoint's own blocks
    where it has them (GGUF, each in its own type), else its float weights quantized here."""
    out = {}
    for prefix, w in quantized_weights(model).items():
        source = prefix if prefix.endswith(".weight") else f"{prefix}.weight"
        data = ckpt.quantized(source)
        if data is None or data[0] != w.kind:  # float, or blocks of another type: quantized here
            data = ckpt.load_weights({source: ((w.rows, w.cols), "float32")})[source]
        for part, array in w.arrays(data).items():
            expected = tuple(int(d) for d in getattr(w, part).shape)
            if array.shape != expected:
                raise WebrtError(f"{source}: its {part} has shape {list(array.shape)}, the model expects {list(expected)}")
            out[f"{prefix}.{part}"] = array
    return out


def _compile(ckpt, out: Path, quantization: str, context_window: int | None, stage, schedule: str,
             tuning_db: Path | None = None, tuning_candidates: bool = True,
             max_binding_bytes: int = DEFAULT_MAX_BINDING_BYTES, int_dot: str = DEFAULT_INT_DOT) -> Path:
    cfg = ckpt.config
    if context_window is not None:
        if not 1 <= context_window <= cfg.context_window:
            raise WebrtError(f"--context-window {context_window} is outside [1, {cfg.context_window}], "
                             "the model's context length")
        cfg.context_window = context_window
    else:  # the KV cache and RoPE tables are sized by what a page uses, not by the advertised length
        cfg.context_window = min(cfg.context_window, DEFAULT_CONTEXT_WINDOW)
    types = ckpt.code_bits() if quantization in ("q4f32", "q4f16") else \
        MixTypes(quantization, cfg.num_hidden_layers, cfg.tie_word_embeddings) if quantization in MIXES else None
    model = family(cfg.family).model(cfg, types)
    # q4f16's f16 kernel set: the same weights (names, dtypes and bytes), f16 activations and KV cache
    model_f16 = f16_model(cfg, types) if quantization == "q4f16" else None
    computed = model.host_tables()
    shapes = {name: (tuple(int(d) for d in p.shape), p.dtype) for name, p in model.named_parameters()}
    state = {name: shape for name, shape in shapes.items() if name.startswith(STATE_PREFIX)}
    quantized = {f"{prefix}.{part}" for prefix, w in quantized_weights(model).items() for part in w.part_names}
    expected = {name: shape for name, shape in shapes.items()
                if name not in computed and name not in state and name not in quantized}
    weights = ckpt.load_weights(expected)
    weights.update(quantize_weights(ckpt, model))
    weights.update(computed)
    if model_f16 is not None:  # split as the f32 model is, on a copy (only the names matter to it)
        split_large_tables(model_f16, dict(weights), max_binding_bytes)
    split_large_tables(model, weights, max_binding_bytes)

    stage("exporting the model to Relax")
    mod, params = model.export_tvm(spec=model.get_default_spec())
    param_names = [name for name, _ in params]
    weights = {name: weights[name] for name in param_names if name not in state}

    stage("compiling kernels (Relax + TIR + WGSL)")
    entries = lambda names: {"forward": ["input_ids", *names], "prefill": [*GENERATE_INPUTS, *names],  # noqa: E731
                             "decode": [*GENERATE_INPUTS, *names]}
    compiled = compile_module(mod, entries(param_names), schedule, candidates=tuning_candidates, int_dot=int_dot)
    kernel_sets = {}
    if model_f16 is not None:
        stage("compiling the f16 kernel set (WebGPU, shader-f16)")
        kernel_sets["f16"] = compile_f16_set(model_f16, parameter_shapes(model), entries, schedule)

    stage("writing the artifact")
    meta = {"name": ckpt.name, "source": "gguf" if ckpt.path.suffix == ".gguf" else "huggingface",
            "quantization": quantization, "schedule": schedule, "config": cfg.to_json()}
    return write_artifact(out, meta, compiled, weights, ckpt.tokenizer_files, state, tuning_db, kernel_sets)


def parameter_shapes(model) -> dict:
    return {name: (tuple(int(d) for d in p.shape), p.dtype) for name, p in model.named_parameters()}


def f16_model(cfg, types):
    """The model with float16 activations and KV cache over the same quantized weights."""
    cfg_f16 = copy.deepcopy(cfg)
    cfg_f16.activation_dtype = "float16"
    return family(cfg.family).model(cfg_f16, types)


def compile_f16_set(model, f32_shapes: dict, entries, schedule: str) -> tuple:
    """(compiled WebGPU kernels, state) of the f16 model: WebGPU only, with no tuner candidates
    (the wasm kernels and the tuner stay f32). Every weight must be the f32 set's, so that both
    sets share the weight files."""
    mod, params = model.export_tvm(spec=model.get_default_spec())
    names = [name for name, _ in params]
    shapes = parameter_shapes(model)
    for name in names:
        if not name.startswith(STATE_PREFIX) and shapes[name] != f32_shapes[name]:
            raise WebrtError(f"internal: the f16 kernel set's {name} is {shapes[name]}, the f32 set's {f32_shapes[name]}")
    state = {name: shape for name, shape in shapes.items() if name.startswith(STATE_PREFIX)}
    return compile_module(mod, entries(names), schedule, wasm=False, candidates=False), state
