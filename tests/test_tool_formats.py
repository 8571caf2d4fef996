"""Tool calls in the formats real chat templates render: Qwen 2.5's (Hermes) and Llama 3.2's, whose
templates are in tests/chat_templates as the models ship them, and the generic format for templates
without tools (SmolLM2's).

The prompt for a tool round trip must be exactly what transformers renders from the same messages
(its render_jinja_template is the reference); a tiny random model whose template is Llama 3.2's
must write its forced call in Llama's format, and the reply must come back as tool_calls."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from tests.models import make_tiny_chat_model
from tests.test_structured import WEATHER_TOOL, run_requests
from webrt.build_artifact import compile_model

REPO = Path(__file__).parent.parent
TEMPLATES = Path(__file__).parent / "chat_templates"
BOS = "<|begin_of_text|>"

# the round trip, as an OpenAI client sends it: arguments as a JSON string
OPENAI_MESSAGES = [
    {"role": "system", "content": "You are a weather assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"},
]
# the same, as transformers documents it for apply_chat_template: arguments as an object
TRANSFORMERS_MESSAGES = [
    *OPENAI_MESSAGES[:2],
    {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    OPENAI_MESSAGES[3],
]

# the engine's own code path: parseTools and toolPrompt (tools.js), then ChatTokenizer.applyChatTemplate
# (tokenizer.js, which gives templates bos_token; @huggingface/jinja has strftime_now). The tokenizer itself is not used.
_RENDER_MJS = """
import { Template } from "@huggingface/jinja";
import { callFormat, parseTools, templateToolFormat, toolPrompt, TOOL_FORMATS } from "./web/tools.js";
import { ChatTokenizer } from "./web/tokenizer.js";
const [source, tool, messages, bos] = JSON.parse(process.argv[1]);
class NoTokenizer {}
const tokenizer = new ChatTokenizer({ Tokenizer: NoTokenizer, Template }, {}, { bos_token: bos }, source, {});
const shaped = toolPrompt(messages, parseTools([tool], "auto"), source);
const format = templateToolFormat(source);
console.log(JSON.stringify({
  prompt: tokenizer.applyChatTemplate(shaped.messages, shaped.variables),
  format: Object.keys(TOOL_FORMATS).find((k) => TOOL_FORMATS[k] === format) ?? null,
  reads: Object.keys(TOOL_FORMATS).find((k) => TOOL_FORMATS[k] === callFormat(source)),
}));
"""


def render_in_node(source: str, bos: str = BOS) -> dict:
    out = subprocess.run(["node", "--input-type=module", "-e", _RENDER_MJS, json.dumps([source, WEATHER_TOOL, OPENAI_MESSAGES, bos])],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("template, format", [("qwen2_5", "hermes"), ("llama3_2", "llama3")])
def test_tool_round_trip_prompt_equals_transformers(template, format):
    """The template renders the tools, the call and the tool's result itself, exactly as transformers
    renders the same conversation (Llama's result is an ipython turn, Qwen's a <tool_response>)."""
    source = (TEMPLATES / f"{template}.jinja").read_text()
    ours = render_in_node(source)
    reference = render_jinja_template([TRANSFORMERS_MESSAGES], tools=[WEATHER_TOOL], chat_template=source,
                                      add_generation_prompt=True, bos_token=BOS, eos_token="")[0][0]
    assert ours["format"] == format and ours["reads"] == format
    assert ours["prompt"] == reference
    if format == "llama3":
        assert '"parameters": {"city": "Paris"}}<|eot_id|>' in ours["prompt"]
        assert "<|start_header_id|>ipython<|end_header_id|>" in ours["prompt"]
    else:
        assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in ours["prompt"]


def test_template_without_tools_gets_the_generic_format():
    """SmolLM2's template knows nothing of tools: the tool list goes into the system message and the
    reply is read in the generic (Hermes) syntax."""
    from tests.models import default_gguf
    import gguf

    source = gguf.GGUFReader(default_gguf()).fields["tokenizer.chat_template"].contents()
    ours = render_in_node(source, bos="")
    assert ours["format"] is None and ours["reads"] == "hermes"
    assert "<tools>" in ours["prompt"] and "<tool_response>\n18 C and sunny\n</tool_response>" in ours["prompt"]


@pytest.fixture(scope="module")
def llama3_template_artifact(tmp_path_factory) -> Path:
    """A tiny random LLaMA whose checkpoint carries Llama 3.2's chat template."""
    folder = make_tiny_chat_model(tmp_path_factory.mktemp("hf") / "tiny-llama3-tools")
    (folder / "chat_template.jinja").write_text((TEMPLATES / "llama3_2.jinja").read_text())
    model_config = json.loads((folder / "config.json").read_text())
    model_config["max_position_embeddings"] = 512  # Llama's tool prompt alone is ~260 tokens
    (folder / "config.json").write_text(json.dumps(model_config))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return compile_model(folder, tmp_path_factory.mktemp("art") / "tiny-llama3-tools", tuning_candidates=False)


def test_llama3_format_call_is_forced_and_read_back(llama3_template_artifact):
    """tool_choice "required" on a model with Llama 3.2's template: the grammar forces
    {"name": "get_weather", "parameters": {...}} (random weights, so only the grammar makes it a
    call), and the reply comes back as tool_calls, whole and streaming; the follow-up turn with the
    tool's result gets text."""
    # an enum keeps a random model's arguments short: a free string could run past max_tokens
    enum_city = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Lyon"]}}, "required": ["city"]}
    tools = [{"type": "function", "function": {**WEATHER_TOOL["function"], "parameters": enum_city}}]
    ask = {"messages": OPENAI_MESSAGES[:2], "tools": tools, "tool_choice": "required", "temperature": 0, "max_tokens": 40}
    follow_up = {"messages": OPENAI_MESSAGES, "tools": tools, "temperature": 0, "max_tokens": 8}
    whole, streamed, answered = run_requests(llama3_template_artifact, [ask, {**ask, "stream": True}, follow_up])
    for called in (whole, streamed):
        assert "error" not in called, called
        assert called["finish"] == "tool_calls", called
        [call] = called["message"]["tool_calls"]
        assert call["function"]["name"] == "get_weather" and call["id"].startswith("call_")
        jsonschema.validate(json.loads(call["function"]["arguments"]), enum_city)
        assert not called["message"]["content"], called  # the call's JSON is not also shown as text
    assert whole["message"]["tool_calls"][0]["function"] == streamed["message"]["tool_calls"][0]["function"]
    assert "error" not in answered, answered
    assert answered["finish"] in ("stop", "length"), answered
