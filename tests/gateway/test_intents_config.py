"""``[[intents]]`` in the config: checks that name the entry, the intent book, the system prompt."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from actors.call import PROMPT_NAMES, greeting_system_note, intent_system_note
from actors.errors import ConfigError
from gateway.config import GatewayConfig
from gateway.intents import IntentConfig, PromptChoice, build_intents

BASE = """
[twilio]
account_sid = "AC0123456789abcdef0123456789abcdef"
api_key_sid = "SK0123456789abcdef0123456789abcdef"
api_key_secret = "secret-0123456789"

[prompts]
greeting_text = "Thanks for calling Example Bank."

[[tools]]
name = "end_call"
description = "Hang up."
kind = "end_call"

[[tools]]
name = "transfer_call"
description = "Transfer the caller."
kind = "transfer_call"
[[tools.targets]]
name = "sales"
number = "+15551234567"

[[tools]]
name = "opening_hours"
description = "Today's opening hours."
url = "http://127.0.0.1:9/hours"
input_schema = '{"type": "object", "properties": {"branch": {"type": "string"}}, "required": ["branch"]}'
"""

INTENTS = """
[[intents]]
name = "operator"
dtmf = "0"
keywords = ["a person", "an operator"]
regex = '\\b(agent|representative)\\b'
prompt = "transferring"
tool = "transfer_call"
input = { target = "sales" }

[[intents]]
name = "hours"
keywords = ["opening hours"]
prompt = "hold"
tool = "opening_hours"
input = { branch = "main" }

[[intents]]
name = "bye"
dtmf = "*9"
prompt = "goodbye"
tool = "end_call"
"""


def load(tmp_path: Path, text: str) -> GatewayConfig:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return GatewayConfig.from_toml(path)


def test_intents_load_and_become_the_calls_intent_book(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + INTENTS)
    assert [i.name for i in config.intents] == ["operator", "hours", "bye"]
    assert config.intents[0] == IntentConfig(
        name="operator",
        dtmf="0",
        keywords=("a person", "an operator"),
        regex=r"\b(agent|representative)\b",
        prompt="transferring",
        tool="transfer_call",
        input={"target": "sales"},
    )
    book = build_intents(config.intents, {n: config.prompts.text(n) for n in PROMPT_NAMES})
    operator = book.match_transcript("Can I talk to an AGENT?")
    assert operator is not None
    assert operator.name == "operator"
    assert operator.input_json == '{"target":"sales"}'
    assert operator.prompt_text == "Transferring your call now."
    assert (book.match_entry("*9") or operator).tool == "end_call"
    hours = book.match_transcript("what are your opening hours")
    assert hours is not None
    assert hours.input_json == '{"branch":"main"}'


def test_the_system_prompt_says_what_the_caller_heard_and_what_notes_are(tmp_path: Path) -> None:
    plain = load(tmp_path, BASE)
    assert plain.system_prompt() == (
        plain.sonic.system_prompt
        + "\n\n"
        + greeting_system_note("Thanks for calling Example Bank.")
    )
    assert "Thanks for calling Example Bank." in plain.system_prompt()
    with_intents = load(tmp_path, BASE + INTENTS)
    assert with_intents.system_prompt().endswith(intent_system_note())
    settings = with_intents.sonic.to_sonic_settings(system_prompt=with_intents.system_prompt())
    assert settings.system_prompt == with_intents.system_prompt()
    # Another persona, another greeting clip (a route's), or none at all.
    pirate = plain.system_prompt(base="Talk like a pirate.", greeting="hold")
    assert pirate == "Talk like a pirate.\n\n" + greeting_system_note("Please hold for a moment.")
    assert plain.system_prompt(base="Talk like a pirate.", greeting=None) == "Talk like a pirate."


def test_the_prompt_choices_are_the_cached_prompts() -> None:
    assert typing.get_args(PromptChoice) == PROMPT_NAMES


@pytest.mark.parametrize(
    ("entry", "key", "says"),
    [
        ('name = "x"\nprompt = "hold"\ntool = "end_call"', "intents[0]", "at least one trigger"),
        (
            'name = "x"\nregex = "(unclosed"\nprompt = "hold"\ntool = "end_call"',
            "intents[0].regex",
            "regular expression",
        ),
        (
            'name = "x"\nregex = "a*"\nprompt = "hold"\ntool = "end_call"',
            "intents[0].regex",
            "at least one character",
        ),
        (
            'name = "x"\nkeywords = ["?!"]\nprompt = "hold"\ntool = "end_call"',
            "intents[0].keywords[0]",
            "letter or digit",
        ),
        (
            'name = "x"\ndtmf = "1#"\nprompt = "hold"\ntool = "end_call"',
            "intents[0].dtmf",
            "terminator",
        ),
        (
            'name = "x"\ndtmf = "0"\nprompt = "hold"\ntool = "nope"',
            "intents[0].tool",
            "transfer_call",
        ),
        (
            'name = "x"\ndtmf = "0"\nprompt = "hold"\ntool = "transfer_call"\n'
            'input = { target = "+15550000000" }',
            "intents[0].input",
            "one of sales",
        ),
        (
            'name = "x"\ndtmf = "0"\nprompt = "hold"\ntool = "end_call"\ninput = { a = 1 }',
            "intents[0].input",
            "end_call takes no input",
        ),
        (
            'name = "x"\ndtmf = "0"\nprompt = "hold"\ntool = "opening_hours"',
            "intents[0].input",
            "branch",
        ),
        (
            'name = "x"\ndtmf = "0"\nprompt = "hold"\ntool = "end_call"\nwhat = 1',
            "intents[0].what",
            "known key",
        ),
    ],
)
def test_a_bad_entry_is_one_error_naming_its_key(
    tmp_path: Path, entry: str, key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, BASE + "\n[[intents]]\n" + entry + "\n")
    assert caught.value.key == key
    assert says in str(caught.value)


def test_names_and_digits_are_distinct_and_an_entry_fits_the_keypad_settings(
    tmp_path: Path,
) -> None:
    one = '[[intents]]\nname = "a"\ndtmf = "1"\nprompt = "hold"\ntool = "end_call"\n'
    for second, key in (
        ('[[intents]]\nname = "a"\ndtmf = "2"\nprompt = "hold"\ntool = "end_call"\n', "name"),
        ('[[intents]]\nname = "b"\ndtmf = "1"\nprompt = "hold"\ntool = "end_call"\n', "dtmf"),
    ):
        with pytest.raises(ConfigError) as caught:
            load(tmp_path, BASE + one + second)
        assert caught.value.key == f"intents[1].{key}"
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, BASE + "[call]\ndtmf_max_digits = 2\n" + one.replace('"1"', '"123"'))
    assert caught.value.key == "intents[0].dtmf"


def test_a_bad_prompt_name_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            tmp_path,
            BASE + '[[intents]]\nname = "a"\ndtmf = "1"\nprompt = "nope"\ntool = "end_call"\n',
        )
    assert caught.value.key == "intents[0].prompt"
    assert "'transferring'" in str(caught.value)


def test_the_complete_example_of_the_docs_loads(tmp_path: Path) -> None:
    docs = Path(__file__).parents[2] / "docs" / "intents.md"
    example = docs.read_text(encoding="utf-8").split("```toml\n", 1)[1].split("```", 1)[0]
    config = load(
        tmp_path, example.replace('api_key_secret = "..."', 'api_key_secret = "s3cret-key"')
    )
    assert [i.name for i in config.intents] == ["operator", "hours", "goodbye"]
    book = build_intents(config.intents, {n: config.prompts.text(n) for n in PROMPT_NAMES})
    assert (book.match_pending("0") or book.rules[1]).name == "operator"
    assert book.match_pending("*") is None  # "*9" is still being typed
    assert (book.match_transcript("What are your opening times?") or book.rules[0]).name == "hours"
