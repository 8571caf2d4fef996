"""The tokenizer files a checkpoint brings, checked at compile time rather than in a visitor's browser.

tokenizer.json is loaded with the `tokenizers` library (the same format web/tokenizer.js reads), the
JSON side files must parse, and the chat template is rendered once with a sample conversation, the
way transformers renders it. Any failure is one WebrtError naming the file.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from .errors import WebrtError

JSON_FILES = ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json")
# user / assistant / user: the one shape every chat template accepts (some refuse a system turn)
SAMPLE_CONVERSATION = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
]


def check_tokenizer_files(files: list[Path], vocab_size: int | None = None) -> None:
    """Refuse tokenizer files (a checkpoint's `tokenizer_files`) the JS shell could not use.

    vocab_size: the model's embedding rows; a tokenizer with more ids would index past them.
    """
    by_name = {path.name: path for path in files}
    configs = {name: _read_json(by_name[name]) for name in JSON_FILES if name in by_name}
    if "tokenizer.json" in by_name:
        _check_tokenizer_json(by_name["tokenizer.json"], vocab_size)
    config = configs.get("tokenizer_config.json", {})
    if "chat_template.jinja" in by_name:
        path = by_name["chat_template.jinja"]
        try:
            template = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise WebrtError(f"{path} cannot be read as text ({err}); expected a Jinja chat template") from None
        render_chat_template(template, config, path)
    elif config.get("chat_template") is not None:
        template = config["chat_template"]
        if not isinstance(template, str):
            raise WebrtError(f"{by_name['tokenizer_config.json']}: chat_template is a {type(template).__name__}; "
                             "expected one template string (named template lists are not supported)")
        render_chat_template(template, config, by_name["tokenizer_config.json"])


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WebrtError(f"{path} is not valid JSON ({err}); save the tokenizer again "
                         "(tokenizer.save_pretrained)") from None
    if not isinstance(value, dict):
        raise WebrtError(f"{path} holds a JSON {type(value).__name__}; expected an object")
    return value


def _check_tokenizer_json(path: Path, vocab_size: int | None) -> None:
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # noqa: BLE001 - the library raises plain Exceptions with its parser's message
        raise WebrtError(f"{path} cannot be loaded by the tokenizers library ({str(err).splitlines()[0]}); "
                         "save the tokenizer again (tokenizer.save_pretrained)") from None
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if vocab_size is not None and size > vocab_size:
        raise WebrtError(f"{path} has {size} tokens, more than the model's vocab_size {vocab_size}: "
                         "the tokenizer belongs to another model")


def render_chat_template(template: str, config: dict, path: Path) -> str:
    """Render the template once with SAMPLE_CONVERSATION, as transformers does (sandboxed Jinja,
    trim_blocks, lstrip_blocks, raise_exception, strftime_now); returns the prompt."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
    try:
        return env.from_string(template).render(
            messages=SAMPLE_CONVERSATION, add_generation_prompt=True,
            bos_token=_token_text(config.get("bos_token")), eos_token=_token_text(config.get("eos_token")))
    except Exception as err:  # noqa: BLE001 - a template can fail in any way Python code can
        raise WebrtError(f"{path}: the chat template fails on a sample conversation "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no message'})") from None


def _token_text(token) -> str:
    return token.get("content", "") if isinstance(token, dict) else token or ""
