#!/usr/bin/env python3
"""The official `openai` and `anthropic` Python SDKs against the router, as a user runs them.

Starts two mock upstreams (one configured as an OpenAI-kind provider, one as an
Anthropic-kind provider) and the router binary, then drives every route through both SDKs,
plain and streamed, native and translated, with tool calls. Every wait is bounded. The last
line says `N passed, M failed`; the exit status is 0 only when nothing failed.

Usage: test_sdks.py SWITCHYARD_BINARY MOCK_UPSTREAM_BINARY
"""

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import anthropic
import openai

CLIENT_KEY = "sdk-client-key-0123"
ANTHROPIC_UPSTREAM_KEY = "sk-ant-upstream-key-0000"
START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 20.0

TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def start(cmd, pattern, env=None):
    """Starts a process and waits (bounded) for a line containing `pattern` on stdout or
    stderr; returns (process, the text after `pattern` on that line)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    found = queue.Queue()

    def read(stream):
        for line in stream:
            if pattern in line:
                found.put(line.split(pattern, 1)[1].strip())

    for s in (proc.stdout, proc.stderr):
        threading.Thread(target=read, args=(s,), daemon=True).start()
    try:
        return proc, found.get(timeout=START_TIMEOUT)
    except queue.Empty:
        proc.kill()
        raise RuntimeError(f"{cmd[0]} did not start within {START_TIMEOUT} s")


class Run:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, fn):
        started = time.monotonic()
        try:
            fn()
            self.passed += 1
            print(f"ok    {name} ({time.monotonic() - started:.2f} s)", flush=True)
        except Exception:  # noqa: BLE001 - every failure is reported, none stops the run
            self.failed += 1
            print(f"FAIL  {name}", flush=True)
            traceback.print_exc()


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    switchyard_bin, mock_bin = sys.argv[1], sys.argv[2]
    procs = []
    run = Run()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            gpt, gpt_url = start(
                [mock_bin, "--name", "gpt", "--call-tools", "--record"], "listening on "
            )
            procs.append(gpt)
            claude, claude_url = start(
                [
                    mock_bin,
                    "--name",
                    "claude",
                    "--call-tools",
                    "--anthropic-key",
                    ANTHROPIC_UPSTREAM_KEY,
                    "--cache-read-tokens",
                    "3",
                ],
                "listening on ",
            )
            procs.append(claude)
            config = os.path.join(tmp, "switchyard.toml")
            with open(config, "w") as f:
                f.write(
                    f"""
[[providers]]
name = "gpt"
base_url = "{gpt_url}"
api_key = "sk-openai-upstream-key-0000"
models = ["gpt-x", "shared"]

[[providers]]
name = "claude"
kind = "anthropic"
base_url = "{claude_url}"
api_key = "{ANTHROPIC_UPSTREAM_KEY}"
models = ["claude-x", "shared"]
"""
                )
            env = dict(
                os.environ,
                DATABASE_URL=f"sqlite://{tmp}/switchyard.db",
                SWITCHYARD_LISTEN="127.0.0.1:0",
                SWITCHYARD_API_KEYS=CLIENT_KEY,
                SWITCHYARD_ADMIN_TOKEN="sdk-admin-token-0123456789",
                SWITCHYARD_WORKERS="2",
                RUST_LOG="info",
            )
            router, url = start(
                [switchyard_bin, "--config", config], "listening on ", env=env
            )
            procs.append(router)
            drive(run, url.rstrip("/"))
        except Exception:  # noqa: BLE001
            run.failed += 1
            traceback.print_exc()
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
    print(f"{run.passed} passed, {run.failed} failed", flush=True)
    return 0 if run.failed == 0 else 1


def drive(run, url):
    oa = openai.OpenAI(
        base_url=f"{url}/v1", api_key=CLIENT_KEY, timeout=REQUEST_TIMEOUT, max_retries=0
    )
    an = anthropic.Anthropic(
        base_url=url, api_key=CLIENT_KEY, timeout=REQUEST_TIMEOUT, max_retries=0
    )
    hello = [{"role": "user", "content": "Hello"}]

    # --- OpenAI chat, native and translated to the Anthropic provider ---
    for model, provider in (("gpt-x", "gpt"), ("claude-x", "claude")):

        def chat_plain(model=model, provider=provider):
            raw = oa.chat.completions.with_raw_response.create(model=model, messages=hello)
            expect(raw.headers.get("x-switchyard-provider") == provider, raw.headers)
            r = raw.parse()
            expect(r.choices[0].message.content == f"Hello from {provider}", r)
            expect(r.choices[0].finish_reason == "stop", r)
            expect(r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage)

        def chat_stream(model=model):
            stream = oa.chat.completions.create(
                model=model,
                messages=hello,
                stream=True,
                stream_options={"include_usage": True},
            )
            text, finish, usage = "", None, None
            for chunk in stream:
                if chunk.usage:
                    usage = chunk.usage
                for c in chunk.choices:
                    text += c.delta.content or ""
                    finish = c.finish_reason or finish
            expect(text.startswith("tok0"), text)
            expect(finish == "stop", finish)
            expect(usage is not None and usage.completion_tokens > 0, usage)

        def chat_tools(model=model):
            r = oa.chat.completions.create(
                model=model, messages=hello, tools=[TOOL_OPENAI], tool_choice="required"
            )
            call = r.choices[0].message.tool_calls[0]
            expect(call.function.name == "get_weather", call)
            args = json.loads(call.function.arguments)
            # The call's result goes back in the next turn.
            r = oa.chat.completions.create(
                model=model,
                tools=[TOOL_OPENAI],
                messages=hello
                + [
                    {"role": "assistant", "tool_calls": [call.model_dump()]},
                    {"role": "tool", "tool_call_id": call.id, "content": json.dumps(args)},
                ],
                tool_choice="none",
            )
            expect(r.choices[0].message.content, r)

        def chat_tools_stream(model=model):
            stream = oa.chat.completions.create(
                model=model, messages=hello, tools=[TOOL_OPENAI], tool_choice="required", stream=True
            )
            name, args, finish = None, "", None
            for chunk in stream:
                for c in chunk.choices:
                    for t in c.delta.tool_calls or []:
                        name = t.function.name or name
                        args += t.function.arguments or ""
                    finish = c.finish_reason or finish
            expect(name == "get_weather", name)
            expect(isinstance(json.loads(args), dict), args)
            expect(finish == "tool_calls", finish)

        run.check(f"openai chat {model}", chat_plain)
        run.check(f"openai chat stream {model}", chat_stream)
        run.check(f"openai chat tools {model}", chat_tools)
        run.check(f"openai chat tools stream {model}", chat_tools_stream)

    def chat_refused():
        try:
            oa.chat.completions.create(model="claude-x", messages=hello, n=2)
        except openai.BadRequestError as e:
            expect(e.body.get("param") == "n", e.body)
            return
        raise AssertionError("n=2 to an Anthropic provider must be refused")

    run.check("openai chat n=2 to an anthropic provider is refused", chat_refused)

    # --- OpenAI embeddings, completions, responses ---
    def embeddings():
        r = oa.embeddings.create(model="gpt-x", input=["a", "b"])
        expect(len(r.data) == 2 and len(r.data[0].embedding) > 0, r)

    def completions():
        r = oa.completions.create(model="gpt-x", prompt="Say")
        expect(r.choices[0].text, r)
        text = "".join(c.choices[0].text for c in oa.completions.create(model="gpt-x", prompt="Say", stream=True) if c.choices)
        expect(text.startswith("tok0"), text)

    def responses():
        r = oa.responses.create(model="gpt-x", input="hi")
        expect(r.output_text, r)
        follow = oa.responses.create(model="shared", input="more", previous_response_id=r.id)
        expect(follow.output_text, follow)
        events = [e.type for e in oa.responses.create(model="gpt-x", input="hi", stream=True)]
        expect(events[0] == "response.created" and events[-1] == "response.completed", events)

    run.check("openai embeddings", embeddings)
    run.check("openai completions plain and stream", completions)
    run.check("openai responses plain, follow-up and stream", responses)

    # --- Anthropic Messages, native and translated to the OpenAI provider ---
    for model, provider in (("claude-x", "claude"), ("gpt-x", "gpt")):

        def messages_plain(model=model, provider=provider):
            raw = an.messages.with_raw_response.create(model=model, max_tokens=64, messages=hello)
            expect(raw.headers.get("x-switchyard-provider") == provider, raw.headers)
            m = raw.parse()
            expect(m.content[0].text == f"Hello from {provider}", m)
            expect(m.stop_reason == "end_turn", m)
            expect(m.usage.input_tokens > 0 and m.usage.output_tokens > 0, m.usage)

        def messages_stream(model=model):
            with an.messages.stream(model=model, max_tokens=64, messages=hello) as s:
                text = "".join(s.text_stream)
                final = s.get_final_message()
            expect(text.startswith("tok0"), text)
            expect(final.stop_reason == "end_turn", final)
            expect(final.usage.output_tokens > 0, final.usage)

        def messages_tools(model=model):
            m = an.messages.create(
                model=model,
                max_tokens=64,
                messages=hello,
                tools=[TOOL_ANTHROPIC],
                tool_choice={"type": "any"},
            )
            use = next(b for b in m.content if b.type == "tool_use")
            expect(use.name == "get_weather" and isinstance(use.input, dict), use)
            expect(m.stop_reason == "tool_use", m)
            m = an.messages.create(
                model=model,
                max_tokens=64,
                tools=[TOOL_ANTHROPIC],
                tool_choice={"type": "none"},
                messages=hello
                + [
                    {"role": "assistant", "content": [use.model_dump()]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
                ],
            )
            expect(m.content[0].type == "text", m)

        def messages_tools_stream(model=model):
            with an.messages.stream(
                model=model,
                max_tokens=64,
                messages=hello,
                tools=[TOOL_ANTHROPIC],
                tool_choice={"type": "any"},
            ) as s:
                final = s.get_final_message()
            use = next(b for b in final.content if b.type == "tool_use")
            expect(use.name == "get_weather" and isinstance(use.input, dict), final)
            expect(final.stop_reason == "tool_use", final)

        run.check(f"anthropic messages {model}", messages_plain)
        run.check(f"anthropic messages stream {model}", messages_stream)
        run.check(f"anthropic messages tools {model}", messages_tools)
        run.check(f"anthropic messages tools stream {model}", messages_tools_stream)

    def messages_errors():
        try:
            an.messages.create(model="nope", max_tokens=8, messages=hello)
        except anthropic.NotFoundError as e:
            expect(e.body["type"] == "error" and e.body["error"]["type"] == "not_found_error", e.body)
        else:
            raise AssertionError("an unknown model is a 404")
        bad = anthropic.Anthropic(base_url=url, api_key="wrong", timeout=REQUEST_TIMEOUT, max_retries=0)
        try:
            bad.messages.create(model="claude-x", max_tokens=8, messages=hello)
        except anthropic.AuthenticationError as e:
            expect(e.body["error"]["type"] == "authentication_error", e.body)
        else:
            raise AssertionError("a wrong key is a 401")

    def models():
        ids = [m.id for m in an.models.list()]
        expect("claude-x" in ids and "gpt-x" in ids, ids)
        ids = [m.id for m in oa.models.list()]
        expect("claude-x" in ids, ids)

    def count_tokens():
        # Only Anthropic-kind providers count tokens: "shared" always goes to claude.
        for model in ("claude-x", "shared", "shared"):
            raw = an.messages.with_raw_response.count_tokens(model=model, messages=hello)
            expect(raw.headers.get("x-switchyard-provider") == "claude", raw.headers)
            expect(raw.parse().input_tokens == 10, raw.parse())
        try:
            an.messages.count_tokens(model="gpt-x", messages=hello)
        except anthropic.NotFoundError as e:
            expect(e.body["error"]["type"] == "not_found_error", e.body)
        else:
            raise AssertionError("no Anthropic-kind provider serves gpt-x: a 404")

    run.check("anthropic count_tokens", count_tokens)
    run.check("anthropic errors in anthropic's shape", messages_errors)
    run.check("models in both shapes", models)


if __name__ == "__main__":
    sys.exit(main())
