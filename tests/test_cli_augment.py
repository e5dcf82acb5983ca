import json

import pytest

import personakit.cli as cli
from personakit.augment import load_examples
from personakit.cli import main
from personakit.llm import CallableGenerator

SPC_RECORDS = [
    {
        "id": "conv-a",
        "user1_personas": ["I teach chemistry.", "I have a red bike."],
        "user2_personas": ["I grow tomatoes.", "My dog is named Biscuit."],
        "turns": [
            {"speaker": "User 1", "text": "Hi! How are you today?"},
            {"speaker": "User 2", "text": "Good, just back from my garden."},
            {"speaker": "User 1", "text": "What do you grow?"},
            {"speaker": "User 2", "text": "Mostly tomatoes. My dog Biscuit guards them."},
            {"speaker": "User 1", "text": "Ha, a guard dog! What breed?"},
            {"speaker": "User 2", "text": "A beagle."},
        ],
    },
    {
        "id": "conv-b",
        "user1_personas": ["I love jazz."],
        "user2_personas": ["I am a nurse."],
        "turns": [
            {"speaker": "User 1", "text": "Hello there."},
            {"speaker": "User 2", "text": "Hi, long shift today."},
            {"speaker": "User 1", "text": "Where do you work?"},
            {"speaker": "User 2", "text": "At the city hospital."},
        ],
    },
]


@pytest.fixture()
def spc_file(tmp_path):
    path = tmp_path / "spc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in SPC_RECORDS))
    return path


@pytest.fixture()
def fake_llm(monkeypatch):
    prompts = []

    def reply(chat):
        prompts.append(chat)
        # the paper's layout ends with "User: <turn>" lines; the chat layout has the turn as the last message
        lines = [line[6:] for line in chat[-1]["content"].splitlines() if line.startswith("User: ")]
        last = lines[-1] if lines else chat[-1]["content"]
        return f"Agent: Generic reply to {last}"

    def build(args):
        build.args = args
        return CallableGenerator(reply, model_id="fake-llm", batch_size=args.batch_size)

    monkeypatch.setattr(cli, "_augment_generator", build)
    build.prompts = prompts
    return build


def test_augment_help(capsys):
    assert main(["augment", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: personakit augment")
    for flag in ("--dataset", "--output", "--model", "--endpoint", "--endpoint-model", "--cache", "--batch-size",
                 "--prefill-batch-size", "--max-examples", "--max-new-tokens"):
        assert flag in out


def test_augment_spc_file(spc_file, tmp_path, fake_llm, capsys):
    out = tmp_path / "out" / "aug.jsonl"
    argv = ["augment", str(spc_file), "--dataset", "spc", "--output", str(out), "--batch-size", "2",
            "--max-new-tokens", "12", "--no-progress"]
    assert main(argv) == 0
    summary = capsys.readouterr().out
    examples = load_examples(out)
    # User 2 answers: conv-a has 3 agent turns, conv-b 2
    assert [e.id for e in examples] == ["conv-a:1", "conv-a:3", "conv-a:5", "conv-b:1", "conv-b:3"]
    assert all(e.agent == "User 2" for e in examples)
    assert examples[2].generic_response == "Generic reply to Ha, a guard dog! What breed?"
    assert examples[2].persona.sentences == ["I grow tomatoes.", "My dog is named Biscuit."]
    assert examples[2].response == "A beagle."
    for line in out.read_text().splitlines():  # ResponseExample.model_dump_json per line
        assert json.loads(line)["generic_response"].startswith("Generic reply to")
    assert "augmented 5 examples from 2 dialogues" in summary
    # the shared defaults (personakit.augment): the chat template for the embedded model, 32 new tokens
    assert "template 'spc-chat'" in summary and fake_llm.args.model == "smollm2"
    assert "generated 5, from cache 0" in summary
    assert len(fake_llm.prompts) == 5
    assert fake_llm.args.max_new_tokens == 12 and fake_llm.args.batch_size == 2
    # no persona sentence in any prompt ("Biscuit" is said in the history, the sentence itself is not)
    sent = json.dumps(fake_llm.prompts)
    for record in SPC_RECORDS:
        for s in record["user1_personas"] + record["user2_personas"]:
            assert s not in sent
    # default cache beside the output: a rerun generates nothing
    assert (tmp_path / "out" / "aug.jsonl.cache.jsonl").is_file()
    assert main(argv) == 0
    assert "generated 0, from cache 5" in capsys.readouterr().out
    assert len(fake_llm.prompts) == 5
    assert load_examples(out) == examples


def test_augment_builtin_max_examples_and_cache_path(tmp_path, fake_llm, capsys):
    out = tmp_path / "b.jsonl"
    cache = tmp_path / "mycache.jsonl"
    assert main(["augment", "--dataset", "builtin", "--output", str(out), "--max-examples", "3",
                 "--cache", str(cache), "--no-progress"]) == 0
    examples = load_examples(out)
    assert len(examples) == 3 and all(e.generic_response for e in examples)
    assert cache.is_file() and len(cache.read_text().splitlines()) == 3
    assert not (tmp_path / "b.jsonl.cache.jsonl").exists()
    assert main(["augment", "--dataset", "builtin", "--output", str(out), "--max-examples", "2",
                 "--no-cache", "--no-progress"]) == 0
    assert len(load_examples(out)) == 2
    assert not (tmp_path / "b.jsonl.cache.jsonl").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "spc"], "needs an INPUT file"),
        (["SOMETHING", "--dataset", "builtin"], "takes no INPUT"),
        (["absent.jsonl", "--dataset", "convai2"], "absent.jsonl: input file not found"),
        (["--dataset", "builtin", "--model", "m", "--endpoint", "http://x/v1", "--endpoint-model", "n"],
         "either --model or --endpoint"),
        (["--dataset", "builtin", "--endpoint", "http://x/v1"], "needs --endpoint-model"),
        (["--dataset", "nope"], "invalid choice"),
    ],
)
def test_augment_usage_errors(argv, message, tmp_path, fake_llm, capsys):
    assert main(["augment", *argv, "--output", str(tmp_path / "o.jsonl")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_augment_bad_input_names_file_and_line(tmp_path, fake_llm, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(SPC_RECORDS[0]) + "\n" + '{"user1_personas": [], "turns": []}\n')
    assert main(["augment", str(bad), "--dataset", "spc", "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "line 2" in err and "user2_personas" in err


def test_augment_endpoint_builds_openai_generator(monkeypatch):
    args = cli.build_parser().parse_args(
        ["augment", "--dataset", "builtin", "--output", "o.jsonl", "--endpoint", "http://127.0.0.1:9/v1",
         "--endpoint-model", "llama", "--batch-size", "8"])
    monkeypatch.delenv("PERSONAKIT_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    gen = cli._augment_generator(args)
    assert type(gen).__name__ == "OpenAICompatibleGenerator"
    assert (gen.base_url, gen.model, gen.api_key, gen.batch_size) == ("http://127.0.0.1:9/v1", "llama", "k", 8)


def test_augment_local_model_gets_the_prefill_batch_size(monkeypatch):
    from personakit.llm import HFGenerator

    seen = {}
    monkeypatch.setattr(HFGenerator, "from_pretrained", classmethod(lambda cls, name, **kw: seen.update(name=name, **kw)))
    args = cli.build_parser().parse_args(["augment", "--dataset", "builtin", "--output", "o.jsonl", "--model", "m",
                                          "--batch-size", "48", "--prefill-batch-size", "16"])
    cli._augment_generator(args)
    assert seen == {"name": "m", "batch_size": 48, "prefill_batch_size": 16}
    args = cli.build_parser().parse_args(["augment", "--dataset", "builtin", "--output", "o.jsonl"])
    cli._augment_generator(args)
    assert seen["prefill_batch_size"] is None


def test_augment_defaults_are_the_recipes(tmp_path):
    """`personakit augment` and the GRAG recipe take their defaults from one place (personakit.augment)."""
    from personakit.augment import DEFAULT_GENERIC_MODEL, DEFAULT_MAX_NEW_TOKENS, default_template
    from personakit.recipes.grag import GRAGAugmentConfig

    args = cli.build_parser().parse_args(["augment", "--dataset", "builtin", "--output", "o.jsonl"])
    assert args.max_new_tokens == DEFAULT_MAX_NEW_TOKENS == GRAGAugmentConfig().max_new_tokens == 32
    assert args.seed == 0 and GRAGAugmentConfig().model == DEFAULT_GENERIC_MODEL
    assert default_template("builtin", DEFAULT_GENERIC_MODEL) == "builtin-chat"
    assert default_template("spc", None) == "spc"  # an endpoint: size unknown, the paper's layout


def test_augment_max_examples_is_a_seeded_sample(tmp_path, fake_llm, capsys):
    """--max-examples N augments a seeded random sample of N examples (in file order), and only those."""
    from personakit.data import dialogues_to_examples, load_builtin_corpus
    from personakit.recipes.base import subsample

    every = [e.id for e in dialogues_to_examples(load_builtin_corpus("all"), agent="agent")]

    def run(*extra):
        out = tmp_path / f"s{len(fake_llm.prompts)}.jsonl"
        assert main(["augment", "--dataset", "builtin", "--output", str(out), "--max-examples", "4", "--no-cache",
                     "--no-progress", *extra]) == 0
        return [e.id for e in load_examples(out)]

    before = len(fake_llm.prompts)
    a = run()
    assert len(fake_llm.prompts) - before == 4  # only the sample reaches the LLM
    assert a == run("--seed", "0") == subsample(every, 4, 0)
    b = run("--seed", "1")
    assert len(b) == 4 and b != a and b == subsample(every, 4, 1)
    assert a != every[:4] and [every.index(i) for i in a] == sorted(every.index(i) for i in a)
