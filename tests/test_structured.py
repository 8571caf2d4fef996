"""Structured output and tool calling: response_format (json_schema, json_object, EBNF grammar) and
OpenAI-shaped tools, enforced by xgrammar's token bitmask applied on the device (WebGPU and wasm).

The mask kernel is checked on a small random model against its own unmasked logits; the rest runs on
the default model (SmolLM2-135M-Instruct). The full 20 prompts x 20 schemas run on both backends is
bench/structured.py (results in bench/structured.md); here a subset keeps CI cheap."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from webrt.browser import run_entries, shell_page

CASES = json.loads((Path(__file__).parent.parent / "bench" / "structured_cases.json").read_text())
CASE = {c["name"]: c for c in CASES}
MASKED_LOGIT = -1e30  # webrt/models/sampling.py

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
DATE_GRAMMAR = 'root ::= year "-" month "-" day\nyear ::= [12] [0-9] [0-9] [0-9]\nmonth ::= "0" [1-9] | "1" [0-2]\nday ::= "0" [1-9] | [12] [0-9] | "3" [01]'
DATE = re.compile(r"[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])")

# Runs requests on one engine; each result is {message, finish, usage} or {error}. A request with
# stream: true is read chunk by chunk and rebuilt, so both paths are covered.
_ENGINE_JS = """
async ([url, device, requests, worker]) => {
  const engine = worker
    ? await window.webrt.createWorkerEngine(new Worker("./worker.js", { type: "module" }), url, { device })
    : await window.webrt.createEngine(url, { device });
  const results = [];
  for (const request of requests) {
    try {
      const api = request.prompt !== undefined ? engine.completions : engine.chat.completions;
      if (!request.stream) {
        const reply = await api.create(request);
        const message = reply.choices[0].message ?? { content: reply.choices[0].text };
        results.push({ message, finish: reply.choices[0].finish_reason, usage: reply.usage });
      } else {
        let content = "";
        const calls = [];
        let last;
        for await (const chunk of await engine.chat.completions.create(request)) {
          content += chunk.choices[0].delta.content ?? "";
          calls.push(...(chunk.choices[0].delta.tool_calls ?? []));
          last = chunk;
        }
        results.push({ message: { content, tool_calls: calls }, finish: last.choices[0].finish_reason, usage: last.usage });
      }
    } catch (err) {
      results.push({ error: `${err.name}: ${err.message}` });
    }
    await engine.resetChat();
  }
  await engine.unload();
  return results;
}
"""


def run_requests(artifact: Path, requests: list[dict], device: str = "wasm", worker: bool = False) -> list[dict]:
    with shell_page(artifact) as (page, url):
        return page.evaluate(_ENGINE_JS, [url, device, requests, worker])


def schema_request(case: dict, **extra) -> dict:
    return {"messages": [{"role": "user", "content": case["prompt"]}], "temperature": 0, "max_tokens": 160,
            "response_format": {"type": "json_schema", "json_schema": {"name": case["name"], "schema": case["schema"]}},
            **extra}


def validates(text: str, schema: dict) -> bool:
    try:
        jsonschema.validate(json.loads(text), schema)
        return True
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False


@pytest.mark.parametrize("device", ["wasm", "webgpu"])
def test_mask_kernel_forbids_masked_tokens_before_sampling(llama_artifact, device):
    """prefill with a bitmask: the masked logits are MASKED_LOGIT, the others unchanged, and the
    token is the argmax over the allowed ones (greedy) - also with a repetition penalty after it."""
    manifest = json.loads((llama_artifact / "manifest.json").read_text())
    vocab = manifest["model"]["config"]["vocab_size"]
    rng = np.random.default_rng(0)
    allowed = np.zeros(vocab, dtype=bool)
    allowed[rng.choice(vocab, 40, replace=False)] = True
    bits = np.zeros((vocab + 31) // 32, dtype=np.uint32)
    for t in np.flatnonzero(allowed):
        bits[t // 32] |= np.uint32(1 << (t % 32))
    every = [-1] * len(bits)
    masked = bits.view(np.int32).tolist()

    def prefill(mask, penalty=1.0, seen=()):
        return ("prefill", {
            "input_ids": {"data": [5, 17, 300, 9], "shape": [1, 4], "dtype": "int32"},
            "token_mask": {"data": mask, "shape": [len(mask)], "dtype": "int32"},
            "penalty_ids": {"data": list(seen), "shape": [len(seen)], "dtype": "int32"},
            "penalty_counts": {"data": [1.0] * len(seen), "shape": [len(seen)], "dtype": "float32"},
            "sampling": {"data": [0, penalty, 0, 0], "shape": [4], "dtype": "float32"}})

    no_bias = {"bias_ids": {"data": [], "shape": [0], "dtype": "int32"},
               "bias_values": {"data": [], "shape": [0], "dtype": "float32"}, "logprobs": {"values": [0]}}
    jobs = [(entry, {**inputs, **no_bias, "offset": {"values": [0]}, "seed": {"values": [1]}}) for entry, inputs in
            [prefill(every), prefill(masked), prefill(masked, 1.5, np.flatnonzero(allowed)[:5].tolist())]]
    outputs = _run_prefills(llama_artifact, jobs, device)
    free, constrained, penalized = outputs
    free_logits = np.array(free["logits"])
    logits = np.array(constrained["logits"])
    assert np.all(logits[~allowed] == np.float32(MASKED_LOGIT))
    np.testing.assert_allclose(logits[allowed], free_logits[allowed], rtol=1e-6, atol=1e-6)
    assert constrained["token"] == int(np.flatnonzero(allowed)[np.argmax(free_logits[allowed])])
    assert allowed[penalized["token"]]
    assert np.all(np.array(penalized["logits"])[~allowed] <= MASKED_LOGIT)


_PREFILL_JS = """
async ([url, device, jobs]) => {
  const model = await window.webrt.loadModel(url, { device });
  const out = [];
  for (const [entry, inputs] of jobs) {
    const typed = {};
    for (const [name, x] of Object.entries(inputs)) {
      typed[name] = x.values ? x : { data: ({ int32: Int32Array, float32: Float32Array })[x.dtype].from(x.data), shape: x.shape };
    }
    // each job prefills at offset 0, overwriting the same cache rows
    const [token, logits] = await model.run(entry, typed);
    out.push({ token: token.data[0], logits: Array.from(logits.data) });
  }
  model.unload();
  return out;
}
"""


def _run_prefills(artifact: Path, jobs, device: str) -> list[dict]:
    with shell_page(artifact) as (page, url):
        return page.evaluate(_PREFILL_JS, [url, device, jobs])


def test_json_schemas_validate_on_wasm_where_unconstrained_output_does_not(default_artifact):
    """A subset of bench/structured_cases.json (nested objects, arrays, enums, numbers, patterns):
    with the schema every reply validates; the same prompts without it mostly do not parse."""
    names = ["book", "date", "contact", "todo", "sentiment", "address"]
    cases = [CASE[n] for n in names]
    requests = [schema_request(c, stream=(i % 2 == 1)) for i, c in enumerate(cases)]
    requests += [{"messages": r["messages"], "temperature": 0, "max_tokens": 96} for r in requests]
    results = run_requests(default_artifact, requests)
    constrained, free = results[:len(cases)], results[len(cases):]
    for case, r in zip(cases, constrained):
        assert "error" not in r, r
        text = r["message"]["content"]
        assert validates(text, case["schema"]), (case["name"], text)
        assert r["finish"] == "stop", (case["name"], r["finish"])
        assert r["usage"]["extra"]["grammar"]["steps"] >= r["usage"]["completion_tokens"]
        assert r["usage"]["extra"]["grammar"]["overlapped"] == 0  # wasm: the kernels run on the engine's thread
    invalid = [c["name"] for c, r in zip(cases, free) if not validates(r["message"]["content"], c["schema"])]
    assert len(invalid) >= len(cases) // 2, f"unconstrained replies that validate: {len(cases) - len(invalid)}"


def test_json_schema_on_webgpu(default_artifact):
    """The same mask on the WebGPU kernels. SwiftShader prefills about one token a second, so this is
    a plain completion (no chat template) of a short prompt with a short schema."""
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"]}
    request = {"prompt": "Is Paris in France? Answer in JSON:", "temperature": 0, "max_tokens": 12,
               "response_format": {"type": "json_schema", "json_schema": {"name": "yes_no", "schema": schema}}}
    [r] = run_requests(default_artifact, [request], device="webgpu")
    assert "error" not in r, r
    assert validates(r["message"]["content"], schema), r["message"]["content"]
    assert r["usage"]["extra"]["device"] == "webgpu"
    # every step's mask was filled by xgrammar while the device ran that step's forward pass
    grammar = r["usage"]["extra"]["grammar"]
    assert grammar["steps"] >= r["usage"]["completion_tokens"] and grammar["overlapped"] == grammar["steps"], grammar


def test_date_grammar_json_object_length_and_bad_input(default_artifact):
    """An EBNF date grammar forces the shape (unconstrained, the model writes a sentence);
    json_object gives a JSON object; max_tokens inside an unfinished structure is "length", not an
    error; invalid schemas, grammars and tools are named errors naming the field."""
    ask = [{"role": "user", "content": "When did World War II end?"}]
    requests = [
        {"messages": ask, "temperature": 0, "max_tokens": 16, "response_format": {"type": "grammar", "grammar": DATE_GRAMMAR}},
        {"messages": ask, "temperature": 0, "max_tokens": 16},
        {"messages": [{"role": "user", "content": "Describe a dog named Rex as JSON with its name and age."}],
         "temperature": 0, "max_tokens": 60, "response_format": {"type": "json_object"}},
        schema_request(CASE["recipe"], max_tokens=6),
        schema_request(CASE["person"], response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objectx"}}}),
        {"messages": ask, "response_format": {"type": "grammar", "grammar": "root ::= [0-9"}},
        {"messages": ask, "response_format": {"type": "xml"}},
        {"messages": ask, "tools": {"get_weather": {}}},
        {"messages": ask, "tools": [{"type": "function", "function": {"description": "no name"}}]},
        {"messages": ask, "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        {"messages": ask, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objectx"}}}]},
    ]
    date, free, obj, short, *bad = run_requests(default_artifact, requests)
    assert DATE.fullmatch(date["message"]["content"]), date
    assert not DATE.fullmatch(free["message"]["content"]), free
    assert isinstance(json.loads(obj["message"]["content"]), dict), obj
    assert short["finish"] == "length" and short["usage"]["completion_tokens"] == 6, short
    assert short["message"]["content"].startswith("{"), short
    expected = [
        ("GrammarError", "response_format.json_schema.schema", 'Unsupported type "objectx"'),
        ("GrammarError", "response_format.grammar", "Unterminated character class"),
        ("InputError", "response_format.type", "json_schema"),
        ("InputError", "tools must be a non-empty list", "function"),
        ("InputError", "tools[0].function.name", "letters"),
        ("InputError", "tool_choice", "get_weather"),
        ("GrammarError", "tools", "objectx"),
    ]
    for r, (name, field, why) in zip(bad, expected):
        assert r.get("error", "").startswith(f"{name}: "), r
        assert field in r["error"] and why in r["error"], r


def round_trip_requests(stream: bool) -> list[dict]:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = {"messages": ask, "tools": [WEATHER_TOOL], "tool_choice": "required", "temperature": 0,
             "max_tokens": 40, "stream": stream}
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    follow = {"messages": [*ask, {"role": "assistant", "content": None, "tool_calls": [call]},
                           {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature_c": 18, "condition": "sunny"}'}],
              "tools": [WEATHER_TOOL], "temperature": 0, "max_tokens": 40, "stream": stream}
    return [first, follow]


def check_round_trip(results: list[dict]) -> None:
    called, answered = results
    assert "error" not in called, called
    assert called["finish"] == "tool_calls", called
    [call] = called["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])
    assert "error" not in answered, answered
    assert not answered["message"].get("tool_calls"), answered
    assert answered["finish"] in ("stop", "length") and answered["message"]["content"].strip(), answered


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streaming"])
def test_get_weather_tool_round_trip(default_artifact, stream):
    """tool_choice "required" gives a well-formed get_weather call (finish_reason "tool_calls");
    the follow-up turn with the tool's result (role "tool") gets a text answer."""
    check_round_trip(run_requests(default_artifact, round_trip_requests(stream)))


def test_tool_round_trip_and_schema_in_a_worker(default_artifact):
    """The Worker engine takes the same fields (its errors keep their names)."""
    requests = [*round_trip_requests(True), schema_request(CASE["city"]),
                {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "grammar", "grammar": "root ::= ("}}]
    *trip, city, bad = run_requests(default_artifact, requests, worker=True)
    check_round_trip(trip)
    assert validates(city["message"]["content"], CASE["city"]["schema"]), city
    assert bad["error"].startswith("GrammarError: response_format.grammar"), bad


_WHITESPACE_JS = """
async ([url]) => {
  const engine = await window.webrt.createEngine(url, { device: "wasm" });
  const space = engine.tokenizer.encode(" ").at(-1);
  const x = engine.tokenizer.encode("x")[0];
  const allowed = (mask, t) => ((mask[t >> 5] >>> (t & 31)) & 1) === 1;
  const c = await engine.constraintFor({ responseFormat: { kind: "ebnf", grammar: 'root ::= [ ]* "x"', field: "g" } });
  const seen = [];
  for (let i = 0; i < 20; i++) {
    const mask = await c.mask();
    seen.push([allowed(mask, space), allowed(mask, x)]);
    if (!allowed(mask, space)) break;
    c.accept(space);
  }
  engine.unload();
  return { seen, cap: window.webrt.WHITESPACE_RUN_CAP };
}
"""


def test_runaway_whitespace_is_capped(default_artifact):
    """A grammar that allows endless spaces: after WHITESPACE_RUN_CAP of them, the mask drops
    whitespace-only tokens and leaves the rest of the grammar's choices."""
    with shell_page(default_artifact) as (page, url):
        out = page.evaluate(_WHITESPACE_JS, [url])
    seen = out["seen"]
    assert all(space and x for space, x in seen[:out["cap"]]), seen
    assert seen[-1] == [False, True], seen
    assert len(seen) == out["cap"] + 1


def test_generate_cli_json_schema_and_bad_files(default_artifact, tmp_path):
    """webrt generate --json-schema prints JSON that validates; bad files and a schema xgrammar
    refuses are one error line and exit code 2 (the EBNF path is the same request field, tested above)."""
    schema = tmp_path / "city.json"
    schema.write_text(json.dumps(CASE["city"]["schema"]))
    grammar = tmp_path / "date.ebnf"
    grammar.write_text(DATE_GRAMMAR)
    cli = [sys.executable, "-m", "webrt.cli", "generate", str(default_artifact), "--device", "wasm", "--max-tokens", "48"]
    ok = subprocess.run([*cli, "--prompt", CASE["city"]["prompt"], "--json-schema", str(schema)],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert validates(ok.stdout.strip(), CASE["city"]["schema"]), ok.stdout

    not_json = tmp_path / "broken.json"
    not_json.write_text("{\"type\": ")
    unsupported = tmp_path / "unsupported.json"
    unsupported.write_text('{"type": "objectx"}')
    for args, message in [
        (["--json-schema", str(not_json)], "is not JSON"),
        (["--json-schema", str(tmp_path / "missing.json")], "cannot be read"),
        (["--json-schema", str(schema), "--grammar", str(grammar)], "not both"),
        (["--grammar", str(tmp_path / "missing.ebnf")], "cannot be read"),
        (["--json-schema", str(unsupported)], 'Unsupported type "objectx"'),
    ]:
        bad = subprocess.run([*cli, "--prompt", "x", *args], capture_output=True, text=True, timeout=300)
        assert bad.returncode == 2, bad.stderr
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("webrt: error: ") and message in lines[0], bad.stderr


_TOOL_PROMPT_MJS = """
import { Template } from "@huggingface/jinja";
import { parseTools, toolPrompt } from "./web/tools.js";
// a Hermes-style template (as Qwen 2.5's): it lists the tools and renders calls and results itself
const hermes = `{%- if tools %}<|im_start|>system\\n<tools>{% for t in tools %}{{ t.function | tojson }}{% endfor %}</tools> Reply with <tool_call></tool_call>.<|im_end|>\\n{%- endif %}
{%- for m in messages %}{%- if m.tool_calls %}<|im_start|>assistant\\n{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}<|im_end|>\\n
{%- elif m.role == "tool" %}<|im_start|>user\\n<tool_response>{{ m.content }}</tool_response><|im_end|>\\n
{%- else %}<|im_start|>{{ m.role }}\\n{{ m.content }}<|im_end|>\\n{%- endif %}{%- endfor %}<|im_start|>assistant\\n`;
const tools = parseTools([TOOL], "auto");
const messages = [{ role: "user", content: "Weather in Paris?" },
  { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "get_weather", arguments: '{"city": "Paris"}' } }] },
  { role: "tool", tool_call_id: "c1", content: "18 C" }];
const own = toolPrompt(messages, tools, hermes);
const generic = toolPrompt(messages, tools, "{% for m in messages %}{{ m.content }}{% endfor %}");
console.log(JSON.stringify({ own: new Template(hermes).render({ messages: own.messages, ...own.variables, add_generation_prompt: true }),
                             generic: generic.messages, none: toolPrompt(messages, parseTools([TOOL], "none"), hermes).messages }));
"""


def test_tools_render_through_the_models_own_template_or_the_generic_format():
    """A template that renders Hermes-style calls gets tools and the messages as they are; any other
    gets the tool list in a system message, calls as text and results as <tool_response> user turns."""
    # from stdin, with the repository as the working folder: ./web and node_modules resolve from there
    out = subprocess.run(["node", "--input-type=module", "-"], input=_TOOL_PROMPT_MJS.replace("TOOL", json.dumps(WEATHER_TOOL)),
                         capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    own = result["own"]
    # the template sees the tool list, and an earlier call's arguments as an object, not a JSON string
    assert '<tools>{"name": "get_weather"' in own and '"arguments": {"city": "Paris"}' in own
    assert "<tool_response>18 C</tool_response>" in own
    system, user, call, response = result["generic"]
    assert system["role"] == "system" and '"name":"get_weather"' in system["content"] and "<tool_call>" in system["content"]
    assert call == {"role": "assistant", "content": '<tool_call>\n{"name": "get_weather", "arguments": {"city":"Paris"}}\n</tool_call>'}
    assert response == {"role": "user", "content": "<tool_response>\n18 C\n</tool_response>"}
    assert [m["role"] for m in result["none"]] == ["user", "assistant", "user"]
