"""Labelled PII sentences from our own templates and value lists (a second source beside pii_dev.jsonl).

Template groups: `tuned` (rules were adjusted while looking at its misses), `held-out` (held out
until its first run, its misses have since been looked at), `held-out-2` (written before any
result on it was seen, with its own name lists; its phone misses have since been looked at),
`held-out-3` (phones, addresses and IBANs in its own formats and sentence shapes) and `held-out-4`
(its own name lists, names mid-sentence without an introducing phrase, capitalised code words in
prose); the last two were written before any result on them was seen and only their scores are
printed. `held-out-4`'s misses were looked at in the 10th session (the phrases for people in sentence
slots written from them were reverted after review); `held-out-5` (own names, own verbs and slots,
tools and bots in the same slots) was written before those phrases and was only scored until the 16th
session printed its misses; `held-out-6` (written then, before that) is only scored. Each group also has sentences
without PII from everyday coding prose, so precision is measured too. Rows have the shape of
pii_dev.jsonl: {"text", "spans": [{"entity_type", "start", "end"}]}.
"""

from __future__ import annotations

import random
import re
import string

FIRST = ["mieszko", "anthony", "oksana", "tadeusz", "ngozi", "haruto", "ines", "bjorn", "leilani", "dmitri",
         "siobhan", "kwame", "ayesha", "matteo", "yusuf", "zofia", "emeka", "ingrid", "rafael", "mei", "priya",
         "joaquin", "astrid", "olusegun", "wiebke", "tomasz", "beatriz", "kenji", "fatima", "lorcan"]
LAST = ["kowalczyk", "okafor", "lindqvist", "haddad", "moreau", "tanaka", "fitzgerald", "novak", "rossi",
        "abernathy", "mbeki", "castellanos", "ivanova", "schultz", "park", "oyelaran", "van der berg", "nakamura",
        "dubois", "grabowski", "henriksen", "oconnell", "petrov", "salazar", "whitfield"]
# names for the `held-out-2` group only (none of them in FIRST/LAST)
FIRST2 = ["wojciech", "chidinma", "aurelio", "svetlana", "takeshi", "eilidh", "bongani", "radka", "esperanza", "faisal",
          "maelle", "henrik", "thandiwe", "gianluca", "ottilie", "xiomara", "ruairi", "parisa", "kofi", "liesbeth"]
LAST2 = ["brzezinski", "adeyemi", "vasquez", "kuznetsova", "yamamoto", "macrae", "dlamini", "horakova", "quintero",
         "al-rashid", "lefebvre", "sorensen", "ferreira", "de luca", "lindgren", "mahlangu", "oduya", "stroud"]
# names for the `held-out-4` group only (in none of the lists above)
FIRST3 = ["gunnhild", "abimbola", "casimir", "yevgenia", "hiroko", "declan", "nokuthula", "jaroslav", "marisol", "tariq",
          "annelies", "ferdinand", "chiamaka", "lucien", "sunniva", "anselm", "rukhsana", "teodora", "kaveh", "isolde"]
LAST3 = ["wisniewski", "nwachukwu", "bergstrom", "khoury", "lavigne", "matsumoto", "mcallister", "zielinska", "obi",
         "rasmussen", "van houten", "delgado", "achterberg", "pellegrini", "szabo", "thorne", "kaminski", "eze"]
# names for the `held-out-5` group only (in none of the lists above)
FIRST5 = ["radomir", "oluwaseun", "brigitta", "tobias", "yaroslava", "eamon", "nnamdi", "solveig", "quentin", "adaeze",
          "leopold", "marguerite", "hamza", "ottokar", "ilse", "zoltan", "folasade", "cormac", "henrike", "vasco"]
LAST5 = ["przybylski", "okonkwo", "halvorsen", "mancini", "dunleavy", "ferencz", "adebayo", "lindholm", "marchetti",
         "obradovic", "sandoval", "kristiansen", "vukovic", "achebe", "holloway", "szymanski", "eriksdottir", "quaid"]
STREETS = ["Elm", "Harbor", "Maple", "Quarry", "Birchwood", "Kingsley", "Orchard", "Juniper", "Lakeview", "Foxglove"]
TYPES = ["Street", "Road", "Avenue", "Lane", "Drive", "Boulevard", "Court", "Way", "St.", "Rd."]
EUROPE = ["Hauptstraße {n}", "Lindenweg {n}", "Kirkegade {n}", "Via Garibaldi {n}", "Rue Lepic {n}",
          "Calle Mayor {n}", "Rua Augusta {n}", "Bahnhofstrasse {n}", "Nørregade {n}", "Keizersgracht {n}"]
# country -> BBAN layout (L = letter, 9 = digit)
IBAN_LAYOUT = {"DE": "9" * 18, "FR": "9" * 23, "NL": "LLLL" + "9" * 10, "GB": "LLLL" + "9" * 14, "ES": "9" * 20,
               "IT": "L" + "9" * 22, "PL": "9" * 24, "CH": "9" * 17}


def _d(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def phone(rng: random.Random) -> str:
    """A phone number in one of many national and international layouts, sometimes with an extension."""
    d = lambda n: _d(rng, n)
    value = rng.choice([
        lambda: f"{d(3)} {d(4)}", lambda: f"({d(2)}) {d(3)}-{d(3)}", lambda: f"+1-{d(3)}-{d(3)}-{d(4)}",
        lambda: f"+44 20 {d(4)} {d(4)}", lambda: f"0{d(2)} {d(8)}", lambda: f"06-{d(2)} {d(2)} {d(2)} {d(2)}",
        lambda: f"{d(3)}.{d(3)}.{d(4)}", lambda: f"+49 (0)30 {d(6)}", lambda: f"({d(3)}) {d(3)}-{d(4)}",
        lambda: f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}", lambda: f"04{d(2)} {d(3)} {d(3)}", lambda: f"+48 {d(3)} {d(3)} {d(3)}",
        lambda: f"{d(3)}-{d(3)}-{d(4)}", lambda: f"+81 3-{d(4)}-{d(4)}",
    ])()
    if rng.random() < 0.2:
        value += rng.choice([f" ext. {d(3)}", f" x{d(4)}", f" ext {d(2)}"])
    return value


def address(rng: random.Random) -> str:
    if rng.random() < 0.6:
        value = f"{rng.randint(1, 9999)} {rng.choice(STREETS)} {rng.choice(TYPES)}"
        return value + (f", Apt {rng.randint(1, 40)}" if rng.random() < 0.3 else "")
    return rng.choice(EUROPE).format(n=rng.randint(1, 250))


def iban(rng: random.Random, layouts: dict[str, str] = IBAN_LAYOUT) -> str:
    """A checksum-valid IBAN (mod 97), grouped in fours or not, upper or lower case."""
    country = rng.choice(sorted(layouts))
    bban = "".join(rng.choice(string.ascii_uppercase if c == "L" else string.digits) for c in layouts[country])
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    value = f"{country}{98 - int(digits) % 97:02d}{bban}"
    if rng.random() < 0.5:
        value = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
    return value.lower() if rng.random() < 0.5 else value


# ---- values for the `held-out-3` group only: their own formats (none of the layouts above)
def _nz(rng: random.Random) -> str:
    return rng.choice("23456789")


def phone3(rng: random.Random) -> str:
    """A plausible number per country: E.164 (spaced, compact, 00-prefixed), national and local layouts."""
    d = lambda n: _d(rng, n)
    value = rng.choice([
        lambda: f"+1{_nz(rng)}{d(2)}{_nz(rng)}{d(6)}",                     # +14155550134
        lambda: f"+49 15{rng.choice('1279')} {d(4)} {d(4)}",                # +49 151 2345 6789
        lambda: f"0049 30 {d(7)}",                                          # 0049 30 1234567
        lambda: f"+44 7{rng.choice('456789')}{d(2)} {d(6)}",                # +44 7700 900123
        lambda: f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
        lambda: f"+61 4{d(2)} {d(3)} {d(3)}",
        lambda: f"+91 9{d(4)} {d(5)}",
        lambda: f"+55 11 9{d(4)}-{d(4)}",
        lambda: f"+81 90-{d(4)}-{d(4)}",
        lambda: f"+353 8{rng.choice('567')} {d(3)} {d(4)}",
        lambda: f"+1 ({_nz(rng)}{d(2)}) {_nz(rng)}{d(2)}-{d(4)}",
        lambda: f"({_nz(rng)}{d(2)}){_nz(rng)}{d(2)}-{d(4)}",              # (415)555-0134
        lambda: f"{_nz(rng)}{d(2)} {_nz(rng)}{d(2)} {d(4)}",                # 415 555 0134
        lambda: f"1-800-{_nz(rng)}{d(2)}-{d(4)}",
        lambda: f"020 7{d(3)} {d(4)}",                                      # London
        lambda: f"07{rng.choice('456789')}{d(2)} {d(6)}",                    # UK mobile
        lambda: f"030 {d(8)}",                                              # Berlin
        lambda: f"0151/{d(4)} {d(4)}",                                      # German slash style
        lambda: f"01 {d(2)} {d(2)} {d(2)} {d(2)}",                          # Paris
        lambda: f"06.{d(2)}.{d(2)}.{d(2)}.{d(2)}",
        lambda: f"020-{_nz(rng)}{d(2)} {d(4)}",                             # Amsterdam
        lambda: f"(02) 9{d(3)} {d(4)}",                                     # Sydney
        lambda: f"03-{d(4)}-{d(4)}",                                        # Tokyo
        lambda: f"138 {d(4)} {d(4)}",                                       # CN mobile
        lambda: f"{_nz(rng)}{d(2)}-{d(4)}",                                 # local 555-0134
        lambda: f"{_nz(rng)}{d(2)} {d(4)}",                                 # local 867 5309
    ])()
    if rng.random() < 0.2:
        value += rng.choice([f", ext {d(3)}", f" extension {d(2)}", f" x {d(3)}", f" (ext. {d(4)})", f" ext.{d(1)}"])
    return value


STREETS3 = ["Willow", "Cedar Ridge", "Old Mill", "Chestnut", "Hawthorne", "Pinecrest", "Sycamore", "Riverside",
            "Magnolia", "Larkspur", "Saint Albans", "Gloucester", "Queensbury", "Blackthorn"]
TYPES3 = ["Ave", "Blvd", "Pkwy", "Crescent", "Close", "Circle", "Trail", "Terrace", "Place", "Row", "Hwy",
          "Street", "Lane", "Ave.", "Dr"]
EUROPE3 = ["Schillerstraße {n}a", "Karl-Marx-Allee {n}", "Storgatan {n}", "Mannerheimintie {n} B", "ul. Długa {n}/3",
           "Carrer de Mallorca {n}", "Via dei Mille {n}", "Hoofdstraat {n}", "{n} rue de la Paix",
           "Avenida da Liberdade {n}", "Kongens Gade {n}", "Leopoldstraße {n}", "Prinsengracht {n}"]
TAILS3 = [", Portland, OR 97205", ", Leeds LS1 4AP", ", Unit 5B", " #12", ", 2nd floor", ", Springfield IL 62704"]


def address3(rng: random.Random) -> str:
    """A street address: US/UK street lines (directions, flats, city and postcode), European layouts, PO boxes."""
    roll = rng.random()
    if roll < 0.5:
        direction = rng.choice(["", "", "N ", "West ", "SE ", "East "])
        value = f"{rng.randint(1, 12000)} {direction}{rng.choice(STREETS3)} {rng.choice(TYPES3)}"
        if rng.random() < 0.4:
            value += rng.choice(TAILS3)
        if rng.random() < 0.15:
            value = f"Flat {rng.randint(1, 30)}, {value}"
    elif roll < 0.9:
        value = rng.choice(EUROPE3).format(n=rng.randint(1, 300))
    else:
        value = rng.choice(["PO Box {n}", "P.O. Box {n}"]).format(n=rng.randint(10, 99999))
    return value.lower() if rng.random() < 0.25 else value


IBAN_LAYOUT3 = {"BE": "9" * 12, "AT": "9" * 16, "SE": "9" * 20, "NO": "9" * 11, "IE": "LLLL" + "9" * 14,
                "DK": "9" * 14, "FI": "9" * 14, "PT": "9" * 21}


def iban3(rng: random.Random) -> str:
    return iban(rng, IBAN_LAYOUT3)


def name(rng: random.Random, full: bool, first: list[str] = FIRST, last: list[str] = LAST) -> str:
    value = rng.choice(first) + (f" {rng.choice(last)}" if full else "")
    return value.title() if rng.random() < 0.4 else value


# names for the `held-out-6` group only (in none of the lists above)
FIRST6 = ["agnieszka", "babajide", "cosimo", "dagny", "ebere", "fiorella", "gwilym", "halldor", "ifeoma", "jovana",
          "kasimir", "lavinia", "mihai", "nkechi", "orla", "pavlina", "rasmus", "saoirse", "thorvald", "ulrike"]
LAST6 = ["brennan", "chukwuma", "dabrowska", "engstrom", "fagerlund", "gallagher", "hadzic", "iwasaki", "jablonski",
         "mwangi", "nilsen", "oyelowo", "pacheco", "ruiz", "sokolova", "tremblay", "vasilescu", "whitlock"]

TEMPLATES = {
    "tuned": [
        "my name is {PERSON} and the linter keeps failing on my branch",
        "hi, my name is {PERSON_FULL}, I maintain the billing service",
        "she named him {PERSON} after her grandfather",
        "call me {PERSON}, everyone on the team does",
        "please call me at {PHONE_NUMBER} tomorrow morning",
        "my number is {PHONE_NUMBER} if the deploy breaks again",
        "you can reach me on {PHONE_NUMBER} after 5pm",
        "I live at {STREET_ADDRESS}, send the laptop there",
        "ship the replacement to {STREET_ADDRESS} please",
        "refund it to {IBAN_CODE} when you can",
        "{PERSON_FULL} asked me to rotate the keys",
        "call me back when the tests pass",
        "this is broken since the upgrade to 3.12",
        "add a class named Widget to the models module",
        "my name is not important, the stack trace is",
        "the job timed out after 785 seconds on runner 12",
    ],
    "held-out": [
        "hey, this is {PERSON} from the platform team, the cache is down",
        "we called our daughter {PERSON}",
        "his name is {PERSON_FULL} and he owns the auth module",
        "people call me {PERSON} at work",
        "text me on {PHONE_NUMBER} if the migration fails",
        "office: {PHONE_NUMBER}",
        "{PHONE_NUMBER} (mobile) is the best way to reach me",
        "my address is {STREET_ADDRESS} in case you need it for the invoice",
        "the package goes to {STREET_ADDRESS}, ring twice",
        "my IBAN is {IBAN_CODE}",
        "thanks, {PERSON_FULL}",
        "this is a known issue with the retry loop",
        "call me when the pipeline is green",
        "the field called user_name must be unique",
        "we bumped the version to 2.14.1 and the build took 412 seconds",
        "see RFC 2068 Section 2 for the header grammar",
    ],
    # Written before any result on it was seen, after the two groups above had been looked at;
    # its own names (FIRST2/LAST2). Its PERSON misses were never printed; its phone misses were
    # looked at (the phone-format session), so its PHONE score is a tuned one.
    "held-out-2": [
        "I'm {PERSON}, the new on-call engineer for payments",
        "regards,\n{PERSON_FULL}",
        "cheers, {PERSON}",
        "can you ask {PERSON} whether the staging db was reset?",
        "cc {PERSON_FULL} on the incident report",
        "ping {PERSON} when the release branch is cut",
        "my colleague {PERSON_FULL} wrote the original parser",
        "their son is named {PERSON}",
        "I am {PERSON_FULL} and I lead the data team",
        "best,\n{PERSON}",
        "{PERSON} said the flaky test is fixed now",
        "according to {PERSON_FULL}, the cron job runs at midnight",
        "please assign the ticket to {PERSON}",
        "the name's {PERSON}, I'm taking over this repo",
        "-- {PERSON_FULL}",
        "talked to {PERSON} yesterday about the outage",
        "my manager {PERSON_FULL} approved the change",
        "fax it to {PHONE_NUMBER}",
        "my cell is {PHONE_NUMBER}",
        "deliver to {STREET_ADDRESS} before noon",
        "the account is {IBAN_CODE}, please wire the deposit",
        "I'm getting a KeyError in the Request handler",
        "thanks, that fixed the import error",
        "ask the Module loader to reload the plugin",
        "ping the health endpoint every 30 seconds",
        "cc the release notes to the mailing list",
        "the Session object is named session_factory in our code",
        "regards to the retry policy, we use exponential backoff",
        "cheers, works now",
        "I'm stuck on the Docker build since Monday",
        "my name field is empty after the form submit",
        "we named the branch feature/login-form",
        "Best practices for the Logger class?",
        "assign the value to the Config object before calling Start",
        "talked to the API yesterday and got a 502",
    ],
    # Written before any result on it was seen (phones, addresses, IBANs: own value formats above and
    # own sentence shapes, with number-heavy sentences without PII). Only its scores are printed.
    "held-out-3": [
        "my desk line is {PHONE_NUMBER}, I'm in the office until 6",
        "if the pager doesn't fire, the on-call phone is {PHONE_NUMBER}",
        "{PHONE_NUMBER} - that's my personal mobile, please don't share it",
        "WhatsApp me at {PHONE_NUMBER} when the rollout starts",
        "the vendor's support hotline ({PHONE_NUMBER}) kept me on hold for an hour",
        "you can get hold of me at {PHONE_NUMBER} or on slack",
        "leave a voicemail at {PHONE_NUMBER} and I'll call back",
        "numbers to try: {PHONE_NUMBER} or {PHONE_NUMBER}",
        "Tel. {PHONE_NUMBER}",
        "the customer left {PHONE_NUMBER} as the callback number",
        "emergency contact: {PHONE_NUMBER}",
        "I'm reachable under {PHONE_NUMBER} this week",
        "the office moved to {STREET_ADDRESS} last month",
        "send the hardware token to {STREET_ADDRESS}",
        "home address: {STREET_ADDRESS}",
        "we're at {STREET_ADDRESS}, third floor, ask at reception",
        "the invoice address is {STREET_ADDRESS}",
        "i'm staying at {STREET_ADDRESS} until friday",
        "{STREET_ADDRESS} is where the courier should drop the monitors",
        "pick me up at {STREET_ADDRESS} at 8",
        "wire the refund to {IBAN_CODE} (my savings account)",
        "bank details: {IBAN_CODE}",
        "the max int32 number is 2147483647, so the counter overflows",
        "call fetch() with a timeout of 30 seconds and 5 retries",
        "the build id is 20231104 and the job ran 1432 tests",
        "ports 8080 and 5432 are open on the box",
        "commit 4f3a2c1 broke the build on 2024-03-15 at 14:02",
        "we processed 1,234,567 records in 12.5 seconds",
        "the 12 Factor App principles say config belongs in the environment",
        "use 2 Way binding in the settings form",
        "order 48213 shipped in 3 boxes, tracking 1Z 999 AA1 01 2345 6784",
        "the epoch 1700000000 is in November 2023",
        "run 4 Workers per pod and 2 Replica Sets per zone",
        "see page 112-118 of the manual and section 4.2.1",
    ],
    # Written before any result on it was seen (its own names, FIRST3/LAST3, and sentence shapes not in
    # the groups above: names mid-sentence without an introducing phrase, and capitalised code words
    # in prose). Only its scores are printed; never tune on its misses.
    "held-out-4": [
        "{PERSON_FULL} from the infra team will review the helm chart",
        "yesterday {PERSON} merged the hotfix without a review",
        "Hello, I am {PERSON} and I work on the mobile client",
        "could {PERSON_FULL} take a look at the flaky e2e suite?",
        "the design doc was drafted by {PERSON_FULL} last quarter",
        "I paired with {PERSON} on the websocket reconnect logic",
        "my teammate {PERSON} keeps getting a 403 from the registry",
        "forward the stack trace to {PERSON_FULL}, she owns that service",
        "kind regards,\n{PERSON_FULL}\nsite reliability",
        "{PERSON} here, the nightly build is red again",
        "as {PERSON_FULL} pointed out in the review, the lock is never released",
        "{PERSON_FULL} wrote: the retry budget is too small",
        "my first name is {PERSON}",
        "please loop in {PERSON} before touching the billing schema",
        "ring me on {PHONE_NUMBER} after the standup",
        "landline {PHONE_NUMBER}, ask for the front desk",
        "return the hardware to {STREET_ADDRESS}",
        "wire the refund to {IBAN_CODE} please",
        "the Router component re-renders on every keystroke",
        "why does the Scheduler skip jobs after a Worker restart?",
        "Parser throws when the Token stream is empty",
        "our Gateway forwards the Header to the Backend service",
        "the Builder pattern feels heavy for this Config object",
        "set the Timeout on the Client before calling Connect",
        "Bearer tokens expire after an hour in the Auth middleware",
        "Django Admin shows a blank page after the Migration ran",
        "the Pipeline stage called Deploy Staging never finishes",
        "Queue consumers stall when the Broker restarts",
        "ask Jenkins to rerun the Integration job",
        "I'm using Terraform with the AWS Provider version 5",
        "Handler returns None when the Request body is empty",
        "thanks, Sentry caught the regression in Production",
        "the Logger prints twice since we added the Formatter",
        "Max Retries is set to 3 in the Celery config",
    ],
    # Written before any result on it was seen and before the rules for people in sentence slots (subject of
    # a work verb, object of a preposition) were written; its own names (FIRST5/LAST5) and verbs, none of
    # held-out-4's sentence shapes; half without PII, with tools, bots and Title Case code words in the
    # same slots. Only its scores are printed; never tune on its misses.
    "held-out-5": [
        "{PERSON} approved the rollout plan this morning",
        "ownership of the cron jobs moved to {PERSON_FULL}",
        "I'll sync with {PERSON} about the schema change",
        "the incident was escalated by {PERSON_FULL} at 3am",
        "{PERSON_FULL} and I rewrote the importer last sprint",
        "shout out to {PERSON} for fixing the memory leak",
        "can you check with {PERSON} whether the cert was renewed?",
        "{PERSON} is out sick, so the release slips a day",
        "last week {PERSON_FULL} refactored the payment adapter",
        "the on-call engineer tonight is {PERSON}",
        "git blame says {PERSON} touched this line in 2021",
        "the onboarding buddy for the new hire is {PERSON_FULL}",
        "{PERSON}'s branch conflicts with main again",
        "ping me or {PERSON} if the queue backs up",
        "ownership of the cron jobs moved to the platform team",
        "I'll sync with upstream about the schema change",
        "the incident was escalated by pagerduty at 3am",
        "shout out to dependabot for the quick version bumps",
        "can you check with kubectl whether the pod restarted?",
        "last week renovate bumped the lockfile twice",
        "git blame says nobody touched this line since 2021",
        "the on-call rotation tonight is empty",
        "celery and redis both restarted after the deploy",
        "ping me or the channel if the queue backs up",
        "Grafana shows the spike right after the Deploy job",
        "Sidekiq retries the Mailer job five times",
        "ask Copilot to explain the Regex in the Validator",
        "the Kafka Consumer lags behind the Producer",
        "Black reformatted the whole file after the upgrade",
        "Rust Analyzer crashes on this macro",
        "Min Replicas is 2 and Max Surge is 25 percent",
        "the Flask Blueprint registers the Admin routes",
    ],
    # 16th session, written and committed before any run and before held-out-5's misses were first printed
    # (rules written from those must hold here): its own names (FIRST6/LAST6), verbs and sentence shapes;
    # half without PII, tools, services, bots and Title Case code words in the same slots. Scores only.
    "held-out-6": [
        "{PERSON} reverted the migration after the outage",
        "the flaky test was quarantined by {PERSON_FULL}",
        "did {PERSON} ever answer about the quota bump?",
        "{PERSON_FULL} owns the terraform modules now",
        "I handed the pager over to {PERSON} at noon",
        "according to {PERSON}, the cache key ignores the locale",
        "{PERSON} and {PERSON} are pairing on the parser rewrite",
        "the ticket is assigned to {PERSON_FULL} but nobody started it",
        "{PERSON_FULL} suggested pinning the base image",
        "we should ask {PERSON} before deleting the bucket",
        "the release notes were signed off by {PERSON}",
        "{PERSON} said the benchmark numbers look off",
        "standup moved to 10 because {PERSON} is travelling",
        "{PERSON_FULL}'s patch fixes the race in the scheduler",
        "the flaky test was quarantined by the ci bot",
        "did stale ever close the issue about the quota bump?",
        "argocd owns the deployment manifests now",
        "I handed the alert over to opsgenie at noon",
        "according to mypy, the cache key ignores the locale",
        "the ticket is assigned to the backend queue but nobody started it",
        "hadolint suggested pinning the base image",
        "we should ask the storage team before deleting the bucket",
        "the release notes were generated by towncrier",
        "standup moved to 10 because the demo ran long",
        "Mergify rebased the Pull Request twice overnight",
        "the Sentinel node lost its Master after the failover",
        "Vault Agent renews the Token before it expires",
        "Prettier and ESLint disagree about the trailing Comma",
        "the Canary stage waits for Argo Rollouts to promote",
        "Lambda cold starts spike when the Layer grows",
        "Cron Job runs at midnight in the Scheduler service",
        "Dependabot opened three PRs against the Release branch",
    ],
}
_NAMES = {"held-out-2": (FIRST2, LAST2), "held-out-4": (FIRST3, LAST3), "held-out-5": (FIRST5, LAST5),
          "held-out-6": (FIRST6, LAST6)}
_VALUES = {"held-out-3": {"PHONE_NUMBER": phone3, "STREET_ADDRESS": address3, "IBAN_CODE": iban3}}
_SLOT = re.compile(r"\{([A-Z_]+)\}")


def rows(group: str, n: int, seed: int) -> list[dict]:
    """`n` sentences from the group's templates, values drawn with `seed`."""
    rng = random.Random(seed)
    first, last = _NAMES.get(group, (FIRST, LAST))
    own = _VALUES.get(group, {})
    out = []
    for _ in range(n):
        template = rng.choice(TEMPLATES[group])
        text, spans, pos = "", [], 0
        for m in _SLOT.finditer(template):
            text += template[pos:m.start()]
            slot = m.group(1)
            value = {"PERSON": lambda: name(rng, False, first, last), "PERSON_FULL": lambda: name(rng, True, first, last),
                     "PHONE_NUMBER": lambda: phone(rng), "STREET_ADDRESS": lambda: address(rng),
                     "IBAN_CODE": lambda: iban(rng)}[slot]() if slot not in own else own[slot](rng)
            entity = "PERSON" if slot.startswith("PERSON") else slot
            spans.append({"entity_type": entity, "start": len(text), "end": len(text) + len(value)})
            text += value
            pos = m.end()
        text += template[pos:]
        if rng.random() < 0.5:  # sentence case (same length: spans stay)
            text = text[:1].upper() + text[1:]
        out.append({"text": text, "spans": spans})
    return out
