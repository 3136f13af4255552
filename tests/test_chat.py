"""`tinyslm chat`: the chat template rendered in a sandbox, the conversation loop with the KV cache
kept across turns (host build and device), oldest turns dropped when the context is full, and the
same text from a device under qemu (mps2-an386), continuing its KV cache, as from the host build."""
import json
import subprocess
import sys

import pytest

import socket_firmware
from conftest import ROOT, compiled_example
from tinyslm.chat import Conversation, HostSession, Template, chat, kv_keeps, load_template, reusable
from tinyslm.errors import TslError
from tinyslm.hostsim import HostModel
from tinyslm.tokenizer import Tokenizer

# ChatML-like, with the example vocabulary's own special tokens
TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}\n"
            "{% elif m['role'] == 'assistant' %}A: {{ m['content'] }}{{ eos_token }}\n"
            "{% elif m['role'] == 'system' %}{{ m['content'] }}\n"
            "{% else %}{{ raise_exception('unknown role ' + m['role']) }}{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}A:{% endif %}")
SCRIPT = "Who are you?\nAnd then what happened?\n/reset\nTell me a story.\n"


@pytest.fixture(scope="module")
def build(example, tmp_path_factory):
    return compiled_example(tmp_path_factory, 96, "chat")


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "tokenizer_config.json"
    p.write_text(json.dumps({"bos_token": "<|bos|>", "eos_token": {"content": "<|eos|>"}, "chat_template": TEMPLATE}))
    return p


def run_chat(*args, script=SCRIPT):
    return subprocess.run([sys.executable, "-m", "tinyslm", "chat", *map(str, args)], input=script,
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_template_renders_in_a_sandbox(config):
    src, bos, eos = load_template(config)
    t = Template(src, bos, eos)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]
    assert t.render(msgs) == "Be brief.\nQ: Hi\nA: Hello<|eos|>\nQ: Bye\nA:"
    assert t.render(msgs, add_generation_prompt=False).endswith("Q: Bye\n")
    with pytest.raises(TslError, match="the template refused the conversation: unknown role tool"):
        t.render([{"role": "tool", "content": "x"}])
    with pytest.raises(TslError, match="rendering failed"):           # the sandbox: no Python internals
        Template("{{ ''.__class__.__mro__[1].__subclasses__() }}").render([])
    with pytest.raises(TslError, match="rendering failed"):           # immutable: messages stay as given
        Template("{% set _ = messages.append(1) %}").render([])


def test_conversation_keeps_kv_and_drops_old_turns(build, config):
    tok = Tokenizer.from_file(build / "tokenizer.json")
    src, bos, eos = load_template(config)
    host = HostModel(build)
    conv = Conversation(tok, Template(src, bos, eos), 96, 24)
    session, out, notes = HostSession(host, 96), [], []
    chat(session, conv, ["Once upon a time there was a king.\n"], out.append, 0.0, 1.0, 0, notes.append)
    first = len(tok.encode("Q: Once upon a time there was a king.\nA:"))
    assert session.reused == 0
    chat(session, conv, ["What did he do?\n"], out.append, 0.0, 1.0, 0, notes.append)
    assert session.reused >= first - 1            # the first turn's prompt stayed in the KV cache
    assert not notes and len(conv.turns) == 2 and all(a for _, a in conv.turns)
    for k in range(4):                                                  # long turns: the context fills up
        chat(session, conv, [f"Tell me more about the king and his {k} daughters and their long journey.\n"],
             out.append, 0.0, 1.0, 0, notes.append)
    assert any("dropped the oldest" in n for n in notes), notes
    assert len(conv._ids()) <= 96
    with pytest.raises(TslError, match="does not fit the context of 96"):
        conv.ask("word " * 200)


def test_host_chat_without_template_continues(build):
    r = run_chat(build, "--max-tokens", 10, script="Once upon a time\n")
    assert r.returncode == 0 and "plain continuation" in r.stderr, r.stderr
    assert len(r.stdout.strip()) > 0


def test_chat_same_text_on_device_and_host(build, config):
    host = run_chat(build, "--config", config, "--max-tokens", 30, "--temperature", 0.7, "--seed", 5)
    assert host.returncode == 0 and "[conversation cleared]" in host.stderr, host.stderr
    assert host.stdout.count("\n") >= 3 and len(host.stdout) > 60, host.stdout
    with socket_firmware.emulated(build, "mps2-an386") as port, socket_firmware.Recorder(port) as rec:
        dev = run_chat(build, "--port", rec.url, "--config", config, "--max-tokens", 30,
                       "--temperature", 0.7, "--seed", 5)
    assert dev.returncode == 0, dev.stderr
    assert dev.stdout == host.stdout
    starts = [r for k, r in enumerate(rec.requests) if r in ("GEN_START", "GEN_CONTINUE")
              and (k == 0 or rec.requests[k - 1] != r)]        # a resent request counted once
    assert starts[:2] == ["GEN_START", "GEN_CONTINUE"] and "ERROR" not in rec.replies, (rec.requests, rec.replies)


def test_kv_reuse_rule():
    """What a run from position k may keep (tsl_kv_keeps): any prefix without sliding windows; with a
    ring of 8 slots, only while nothing past k + 1 ran or the ring has not wrapped."""
    assert kv_keeps(50, 20, 96) and kv_keeps(50, 0, 8) and kv_keeps(21, 20, 8) and kv_keeps(8, 3, 8)
    assert not kv_keeps(50, 20, 8) and not kv_keeps(9, 3, 8) and not kv_keeps(19, 20, 96)
    fed = [1, 2, 3, 4, 5, 6]
    assert reusable(fed, [1, 2, 3, 9, 9], 6, 96) == 3 and reusable(fed, [1, 2, 3, 9, 9], 6, 4) == 0
    assert reusable(fed, fed + [7], 6, 4) == 6 and reusable(fed, [1, 2, 3], 6, 96) == 2   # the last id always runs
