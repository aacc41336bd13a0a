#!/usr/bin/env python3
"""A crewshipd agent that asks an LLM and records what the call cost.

Contract (docs/agents.md): the task arrives on stdin; what this prints on
stdout becomes the assignment's result_summary; a failure exits non-zero
with its reason as the last line on stderr, which the assignment's
error_message quotes. The call is recorded with the run's own token, so
the ledger books it against this run, and priced by the daemon's rate card.

Settings, in the agent's `env`: LLM_API_URL (an OpenAI-compatible base URL,
default https://api.openai.com/v1), LLM_API_KEY, LLM_MODEL (default
gpt-4o-mini). Only the Python standard library is needed.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request


def post(url, body, headers):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def main():
    task = sys.stdin.read()
    base = os.environ.get("LLM_API_URL", "https://api.openai.com/v1").rstrip("/")
    model = os.environ.get("LLM_MODEL", "gpt-4o-mini")
    headers = {"Authorization": "Bearer " + os.environ.get("LLM_API_KEY", "")}
    # The run's trace context: the LLM gateway's spans can join the run's trace.
    if os.environ.get("TRACEPARENT"):
        headers["traceparent"] = os.environ["TRACEPARENT"]
    started = time.monotonic()
    try:
        answer = post(base + "/chat/completions",
                      {"model": model, "messages": [{"role": "user", "content": task}]}, headers)
    except urllib.error.HTTPError as e:
        sys.exit(f"the LLM API answered {e.code}: {e.read().decode(errors='replace')[:200]}")
    except OSError as e:
        sys.exit(f"cannot reach the LLM API at {base}: {e}")
    took_ms = int((time.monotonic() - started) * 1000)

    usage = answer.get("usage") or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    call = {
        "provider": "openai",
        "model": answer.get("model", model),
        # OpenAI counts cached prompt tokens inside prompt_tokens; the rate
        # card prices them apart.
        "input_tokens": usage.get("prompt_tokens", 0) - cached,
        "cached_input_tokens": cached,
        "output_tokens": usage.get("completion_tokens", 0),
        "duration_ms": took_ms,
    }
    recorded = post(os.environ["CREWSHIP_API_URL"] + "/api/v1/llm-calls", call,
                    {"Authorization": "Bearer " + os.environ["CREWSHIP_RUN_TOKEN"]})
    print(f"recorded {recorded['id']}: {recorded['cost_usd']} USD", file=sys.stderr)
    print(answer["choices"][0]["message"]["content"])


if __name__ == "__main__":
    main()
