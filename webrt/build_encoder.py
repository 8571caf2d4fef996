"""`webrt compile` for an encoder (BERT family): checkpoint -> BertEncoder -> kernels -> artifact
with one `embed` entry (docs/ARTIFACT.md, embedding model entries)."""

from __future__ import annotations

from pathlib import Path

from .artifact import write_artifact
from .compile import compile_module
from .errors import WebrtError
from .importers.sentence_transformers import EncoderCheckpoint
from .models.bert import EMBED_INPUTS, BertEncoder


def compile_encoder(ckpt: EncoderCheckpoint, out: Path, quantization: str, max_seq_length: int | None,
                    stage, schedule: str, tuning_db: Path | None = None, tuning_candidates: bool = True) -> Path:
    """max_seq_length (from --context-window) truncates below the checkpoint's own length."""
    cfg = ckpt.config
    if quantization != "f32":
        raise WebrtError(f"quantization {quantization!r} is not supported for the encoder {cfg.architecture}; "
                         "use --quantization f32")
    if max_seq_length is not None:
        if not 1 <= max_seq_length <= cfg.max_seq_length:
            raise WebrtError(f"--context-window {max_seq_length} is outside [1, {cfg.max_seq_length}], "
                             "the model's longest input")
        cfg.max_seq_length = max_seq_length
    if ckpt.note:
        stage(f"note: {ckpt.note}")
    model = BertEncoder(cfg)
    stage("exporting the model to Relax")
    mod, params = model.export_tvm(spec=model.get_default_spec())
    param_names = [name for name, _ in params]
    weights = ckpt.load_weights({name: (tuple(int(d) for d in p.shape), p.dtype) for name, p in params})

    stage("compiling kernels (Relax + TIR + WGSL)")
    compiled = compile_module(mod, {"embed": [*EMBED_INPUTS, *param_names]}, schedule, candidates=tuning_candidates)

    stage("writing the artifact")
    meta = {"name": ckpt.name, "source": "huggingface", "quantization": quantization, "schedule": schedule,
            "task": "embedding", "config": cfg.to_json(), "note": ckpt.note}
    return write_artifact(out, meta, compiled, weights, ckpt.tokenizer_files, None, tuning_db)
