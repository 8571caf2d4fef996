"""OpenAI request fields beyond the basics: logit_bias, n > 1, an AbortSignal per request (on the
page and through a Worker), unknown fields ignored and wrongly typed known fields refused."""

from __future__ import annotations

from webrt.browser import shell_page

# calls: [method, request, {abortAfter}]; a request with abortAfter gets an AbortController's signal
# and streams, and the signal aborts after that many chunks
DRIVER_JS = """
async ([url, calls, inWorker]) => {
  const engine = inWorker
    ? await window.webrt.createWorkerEngine(new Worker("./worker.js", { type: "module" }), url)
    : await window.webrt.createEngine(url);
  const results = [];
  for (const [method, request, { abortAfter } = {}] of calls) {
    const api = method === "chat" ? engine.chat.completions : engine.completions;
    try {
      if (abortAfter) {
        const controller = new AbortController();
        const chunks = [];
        for await (const chunk of await api.create({ ...request, stream: true, signal: controller.signal })) {
          chunks.push(chunk);
          if (chunks.length === abortAfter) controller.abort();
        }
        results.push({ chunks });
      } else {
        results.push(await api.create(request));
      }
    } catch (err) {
      results.push({ error: `${err.name}: ${err.message}` });
    }
  }
  await engine.unload();
  return results;
}
"""


def run(artifact, calls, in_worker=False):
    with shell_page(artifact) as (page, url):
        return page.evaluate(DRIVER_JS, [url, calls, in_worker])


def ids(reply):
    return reply["usage"]["extra"]["token_ids"]


PROMPT = {"prompt": "a b c", "max_tokens": 6, "temperature": 0}


def test_logit_bias_keeps_a_token_out_or_forces_it(tiny_chat_artifact):
    (free,) = run(tiny_chat_artifact, [("text", PROMPT)])
    first = ids(free)[0]
    forced = 100 if first != 100 else 101
    banned, pushed, sampled, outside = run(tiny_chat_artifact, [
        ("text", {**PROMPT, "logit_bias": {str(first): -100}}),
        ("text", {**PROMPT, "logit_bias": {str(forced): 100}}),
        ("text", {**PROMPT, "temperature": 0.8, "seed": 3, "logit_bias": {str(forced): 100}}),
        ("text", {**PROMPT, "logit_bias": {"999999": -100}}),
    ])
    assert first not in ids(banned), (ids(free), ids(banned))  # -100: masked on the device, at every step
    assert ids(pushed)[0] == forced and ids(sampled)[0] == forced  # +100 wins greedy and sampled choices
    assert outside["error"].startswith("InputError: logit_bias names token 999999; the vocabulary has")


def test_n_replies_are_different_and_a_seed_reproduces_them(tiny_chat_artifact):
    request = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 1.0, "seed": 11, "n": 3}
    one, again, other_seed = run(tiny_chat_artifact, [("chat", request), ("chat", request), ("chat", {**request, "seed": 12})])
    assert [c["index"] for c in one["choices"]] == [0, 1, 2]
    samples = one["usage"]["extra"]["choice_token_ids"]
    assert len({tuple(s) for s in samples}) == 3, samples
    assert again["usage"]["extra"]["choice_token_ids"] == samples
    assert [c["message"]["content"] for c in again["choices"]] == [c["message"]["content"] for c in one["choices"]]
    assert other_seed["usage"]["extra"]["choice_token_ids"] != samples
    assert one["usage"]["completion_tokens"] == sum(len(s) for s in samples)


def test_stream_options_include_usage_adds_a_usage_chunk(tiny_chat_artifact):
    request = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0, "stream": True}
    with shell_page(tiny_chat_artifact) as (page, url):
        plain, with_usage = page.evaluate("""async ([url, requests]) => {
          const engine = await window.webrt.createEngine(url);
          const out = [];
          for (const request of requests) {
            const chunks = [];
            for await (const chunk of await engine.chat.completions.create(request)) chunks.push(chunk);
            out.push(chunks);
          }
          engine.unload();
          return out;
        }""", [url, [request, {**request, "stream_options": {"include_usage": True}}]])
    assert len(with_usage) == len(plain) + 1
    *_, finishing, usage_chunk = with_usage
    assert usage_chunk["choices"] == [] and usage_chunk["object"] == "chat.completion.chunk"
    assert usage_chunk["usage"]["completion_tokens"] == plain[-1]["usage"]["completion_tokens"]
    assert finishing["choices"][0]["finish_reason"] == plain[-1]["choices"][0]["finish_reason"]


def check_abort(results):
    free, aborted, after = results
    chunks = aborted["chunks"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "abort"
    assert chunks[-1]["usage"]["completion_tokens"] < 12
    assert after["choices"][0]["text"] == free["choices"][0]["text"]  # the engine answers normally afterwards


ABORT_CALLS = [("text", {**PROMPT, "max_tokens": 12}), ("text", {**PROMPT, "max_tokens": 12}, {"abortAfter": 2}),
               ("text", {**PROMPT, "max_tokens": 12})]


def test_abort_signal_ends_the_stream_on_the_page_and_in_a_worker(tiny_chat_artifact):
    check_abort(run(tiny_chat_artifact, ABORT_CALLS))
    check_abort(run(tiny_chat_artifact, ABORT_CALLS, in_worker=True))


def test_unknown_fields_are_ignored_and_wrong_types_refused(tiny_chat_artifact):
    user = [{"role": "user", "content": "Hi"}]
    cases = [
        ({"temperature": "0"}, 'InputError: temperature must be a number, got "0"'),
        ({"seed": 1.5}, "InputError: seed must be an integer, got 1.5"),
        ({"stream": "yes"}, 'InputError: stream must be true or false, got "yes"'),
        ({"n": 0}, "InputError: n must be an integer in [1, 16], got 0"),
        ({"n": 2, "stream": True}, "InputError: n > 1 works only without stream; stream one reply at a time"),
        ({"logit_bias": [1, 2]}, "InputError: logit_bias must be an object of token id -> bias, got [1,2]"),
        ({"logit_bias": {"x": 1}}, 'InputError: logit_bias keys must be token ids (integers >= 0), got "x"'),
        ({"logit_bias": {"5": 101}}, "InputError: logit_bias[5] must be a number in [-100, 100], got 101"),
        ({"signal": {"aborted": "no"}}, "InputError: signal must be an AbortSignal (new AbortController().signal)"),
        ({"stream_options": {"include_usage": 1}}, 'InputError: stream_options must be {include_usage: true | false}, got {"include_usage":1}'),
    ]
    calls = [("chat", {"messages": user, "max_tokens": 2, **fields}) for fields, _ in cases]
    calls.append(("chat", {"messages": user, "max_tokens": 2, "temperature": 0, "user": "someone",
                           "metadata": {"k": "v"}, "parallel_tool_calls": False, "logit_bias": {}}))
    *refused, accepted = run(tiny_chat_artifact, calls)
    assert [r.get("error") for r in refused] == [message for _, message in cases]
    assert accepted["object"] == "chat.completion" and accepted["usage"]["completion_tokens"] >= 1
