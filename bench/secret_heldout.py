"""Held-out secrets set: provider key formats (as the providers document them) filled with random
values, in the files they usually sit in, plus placeholder look-alikes that must NOT be reported.

Written before any rule was measured on it and never used to tune a rule: `bench/guardrails.py`
reports it as "held-out". Seeded, so every run sees the same ~600 strings. Nothing here is copied
from the shared eval sets.
"""

from __future__ import annotations

import base64
import json
import random
import string
import urllib.parse
from collections.abc import Callable

UP, LOW, DIG = string.ascii_uppercase, string.ascii_lowercase, string.digits
ALNUM = UP + LOW + DIG
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"
WORDS = ["summer", "winter", "dragon", "monkey", "orange", "sunshine", "welcome", "falcon", "rocket", "harbor",
         "Tiger", "Admin", "Spring", "Autumn", "Secure", "Coffee", "Pepper", "Galaxy", "Silver", "Maple"]


def weak_password(rng: random.Random) -> str:
    """What people really use: a word, a year or number, maybe a symbol (Summer2024!, monkey123)."""
    word = rng.choice(WORDS)
    word = word.capitalize() if rng.random() < .6 else word
    return word + str(rng.choice([rng.randint(1, 999), rng.randint(1990, 2026)])) + rng.choice(["", "!", "#", "$", "@", "?"])


def strong_password(rng: random.Random) -> str:
    return "".join(rng.choice(ALNUM + "!#%^*-_+=") for _ in range(rng.randint(14, 28)))


def any_password(rng: random.Random) -> str:
    return weak_password(rng) if rng.random() < .5 else strong_password(rng)


def b64(rng: random.Random, nbytes: int) -> str:
    return base64.b64encode(rng.randbytes(nbytes)).decode()


def b64url_json(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")


def r(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _pem(rng: random.Random, kind: str) -> str:
    body = b64(rng, rng.choice([600, 900, 1190]))
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{lines}\n-----END {kind}PRIVATE KEY-----"


# family -> generators of (text with one secret). Formats from the providers' documentation.
POSITIVE: dict[str, list[Callable[[random.Random], str]]] = {
    "aws": [
        lambda g: f"[default]\naws_access_key_id = AKIA{r(g, UP + '234567', 16)}\n",
        lambda g: f"aws_secret_access_key = {r(g, B64, 40)}\n",
        lambda g: f"export AWS_SECRET_ACCESS_KEY={r(g, B64, 40)}",
        lambda g: f'session = boto3.Session(aws_access_key_id="ASIA{r(g, UP + "234567", 16)}")',
    ],
    "azure": [
        lambda g: f"DefaultEndpointsProtocol=https;AccountName=st{r(g, LOW, 8)};AccountKey={b64(g, 64)};EndpointSuffix=core.windows.net",
        lambda g: f"<storage>\n  <account_name>st{r(g, LOW, 8)}</account_name>\n  <account_key>{b64(g, 64)}</account_key>\n</storage>",
        lambda g: (f"https://st{r(g, LOW, 8)}.blob.core.windows.net/data?sv=2022-11-02&ss=b&srt=sco&sp=rl"
                   f"&se=2026-01-01T00:00:00Z&spr=https&sig={urllib.parse.quote(b64(g, 32), safe='')}"),
        lambda g: f"AZURE_CLIENT_SECRET={r(g, ALNUM, 3)}{g.randint(1, 9)}Q~{r(g, ALNUM + '_~.-', 34)}",
        lambda g: (f"Endpoint=sb://{r(g, LOW, 8)}.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
                   f"SharedAccessKey={b64(g, 32)}"),
        lambda g: f"docker login {r(g, LOW, 8)}.azurecr.io -u {r(g, LOW, 8)} -p {r(g, ALNUM + '+/', 52)}",
    ],
    "gcp": [
        lambda g: f'const firebaseKey = "AIza{r(g, B64URL, 35)}";',
        lambda g: json.dumps({"type": "service_account", "project_id": "p-" + r(g, LOW, 6),
                              "private_key_id": r(g, HEX, 40), "private_key": _pem(g, "") + "\n"}, indent=2),
    ],
    "github": [
        lambda g: f"GITHUB_TOKEN=ghp_{r(g, ALNUM, 36)}",
        lambda g: f"git remote set-url origin https://x-access-token:ghs_{r(g, ALNUM, 36)}@github.com/o/r.git",
        lambda g: f'token: "gho_{r(g, ALNUM, 36)}"',
        lambda g: f"export GH_TOKEN=github_pat_{r(g, ALNUM, 22)}_{r(g, ALNUM, 59)}",
    ],
    "gitlab": [
        lambda g: f"GITLAB_TOKEN=glpat-{r(g, ALNUM + '-_', 20)}",
        lambda g: f"client_secret: gloas-{r(g, HEX, 64)}",
        lambda g: f"runner_token = \"glrt-{r(g, ALNUM + '-_', 20)}\"",
        lambda g: f"deploy: gldt-{r(g, ALNUM + '-_', 20)}",
        lambda g: f"PIPELINE_TRIGGER=glptt-{r(g, HEX, 40)}",
        lambda g: f"feed_token=glft-{r(g, ALNUM + '-_', 20)}",
        lambda g: f"SCIM_TOKEN=glsoat-{r(g, ALNUM + '-_', 20)}",
        lambda g: f"CI_JOB_TOKEN=glcbt-{r(g, HEX, 2)}_{r(g, ALNUM + '-_', 20)}",
        lambda g: f"incoming: glimt-{r(g, ALNUM, 25)}",
        lambda g: f"agent_token: glagent-{r(g, ALNUM + '-_', 50)}",
    ],
    "slack": [
        lambda g: f"SLACK_BOT_TOKEN=xoxb-{r(g, DIG, 12)}-{r(g, DIG, 13)}-{r(g, ALNUM, 24)}",
        lambda g: f"slack_user = 'xoxp-{r(g, DIG, 12)}-{r(g, DIG, 12)}-{r(g, DIG, 13)}-{r(g, HEX, 32)}'",
        lambda g: f"SLACK_WEBHOOK=https://hooks.slack.com/services/T{r(g, UP + DIG, 8)}/B{r(g, UP + DIG, 10)}/{r(g, ALNUM, 24)}",
        lambda g: f"app_token: xapp-1-A{r(g, UP + DIG, 10)}-{r(g, DIG, 13)}-{r(g, HEX, 64)}",
    ],
    "stripe": [
        lambda g: f"stripe.api_key = \"sk_live_{r(g, ALNUM, 24)}\"",
        lambda g: f"STRIPE_SECRET_KEY=sk_live_{r(g, ALNUM, 99)}",
        lambda g: f"STRIPE_RESTRICTED=rk_live_{r(g, ALNUM, 24)}",
    ],
    "openai": [
        lambda g: f"OPENAI_API_KEY=sk-proj-{r(g, B64URL, 74)}T3BlbkFJ{r(g, B64URL, 74)}",
        lambda g: f"client = OpenAI(api_key=\"sk-{r(g, ALNUM, 20)}T3BlbkFJ{r(g, ALNUM, 20)}\")",
    ],
    "anthropic": [
        lambda g: f"ANTHROPIC_API_KEY=sk-ant-api03-{r(g, B64URL, 93)}AA",
        lambda g: f"x-api-key: sk-ant-admin01-{r(g, B64URL, 93)}AA",
    ],
    "huggingface": [
        lambda g: f"HF_TOKEN=hf_{r(g, UP + LOW, 34)}",
        lambda g: f"login(token=\"hf_{r(g, UP + LOW, 34)}\")",
    ],
    "npm": [
        lambda g: f"//registry.npmjs.org/:_authToken=npm_{r(g, ALNUM, 36)}",
        lambda g: f"NPM_TOKEN=npm_{r(g, ALNUM, 36)}",
    ],
    "pypi": [
        lambda g: f"[pypi]\nusername = __token__\npassword = pypi-AgEIcHlwaS5vcmc{r(g, B64URL, 70)}",
        lambda g: f"TWINE_PASSWORD=pypi-AgEIcHlwaS5vcmc{r(g, B64URL, 120)}",
    ],
    "jwt": [
        lambda g: "Authorization: Bearer " + b64url_json({"alg": "RS256", "typ": "JWT"}) + "." + b64url_json(
            {"sub": r(g, DIG, 10), "name": r(g, LOW, 6), "iat": g.randint(1_600_000_000, 1_800_000_000)}) + "." + r(g, B64URL, 86),
        lambda g: "id_token=" + b64url_json({"alg": "HS256"}) + "." + b64url_json(
            {"iss": "https://auth." + r(g, LOW, 6) + ".com", "exp": g.randint(1_600_000_000, 1_800_000_000)}) + "." + r(g, B64URL, 43),
    ],
    "private-key": [
        lambda g: _pem(g, "RSA "),
        lambda g: _pem(g, "EC "),
        lambda g: _pem(g, ""),
        lambda g: _pem(g, "OPENSSH "),
    ],
    "db-url": [
        lambda g: f"MONGO_URL=mongodb://root:{any_password(g)}@mongo:27017/admin",
        lambda g: f"mongodb+srv://app:{any_password(g)}@cluster0.{r(g, LOW, 5)}.mongodb.net/?retryWrites=true",
        lambda g: f"DATABASE_URL=postgres://app:{any_password(g)}@db.internal:5432/app",
        lambda g: f"SQLALCHEMY_DATABASE_URI = 'postgresql+psycopg://svc:{any_password(g)}@10.0.0.5/prod'",
        lambda g: f"mysql://admin:{any_password(g)}@mysql.local:3306/shop",
        lambda g: f"CELERY_BROKER_URL=amqp://guest:{any_password(g)}@rabbit:5672//",
        lambda g: f"REDIS_URL=redis://default:{any_password(g)}@cache:6379/0",
        lambda g: f"redis://:{any_password(g)}@localhost:6379",
        lambda g: f"amqps://user:{any_password(g)}@mq.example.net/vhost",
    ],
    "password-assignment": [
        lambda g: f'DB_PASSWORD = "{any_password(g)}"',
        lambda g: json.dumps({"username": "svc", "password": any_password(g)}),
        lambda g: f"database:\n  user: app\n  password: {any_password(g)}\n",
        lambda g: f"POSTGRES_PASSWORD={any_password(g)}",
        lambda g: f"<datasource>\n  <password>{any_password(g)}</password>\n</datasource>",
        lambda g: f"<password>{{AQAAABAAAAAQ{r(g, B64, 60)}=}}</password>",
        lambda g: f"spring.datasource.password={any_password(g)}",
        lambda g: f"client_secret: \"{r(g, ALNUM, 32)}\"",
        lambda g: f"conn = psycopg.connect(host='db', user='app', password='{any_password(g)}')",
        lambda g: f"Server=sql01;Database=app;User Id=sa;Password={any_password(g)};",
    ],
}

NEGATIVE: list[Callable[[random.Random], str]] = [
    lambda g: "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
    lambda g: "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    lambda g: 'api_key = "<your-api-key>"',
    lambda g: "OPENAI_API_KEY=${OPENAI_API_KEY}",
    lambda g: "token: ${{ secrets.GITHUB_TOKEN }}",
    lambda g: "password: {{ vault_db_password }}",
    lambda g: 'GITHUB_TOKEN="ghp_' + "x" * 36 + '"',
    lambda g: "password = os.environ['DB_PASSWORD']",
    lambda g: "def login(username: str, password: str) -> bool:",
    lambda g: "password = getpass.getpass()",
    lambda g: "DATABASE_URL=postgres://user:${DB_PASSWORD}@localhost/app",
    lambda g: "mongodb://<username>:<password>@host:27017",
    lambda g: "STRIPE_KEY=sk_live_****************",
    lambda g: "Authorization: Bearer <token>",
    lambda g: f"commit {r(g, HEX, 40)}",
    lambda g: f"sha256:{r(g, HEX, 64)}",
    lambda g: f"request_id = \"{r(g, HEX, 8)}-{r(g, HEX, 4)}-4{r(g, HEX, 3)}-a{r(g, HEX, 3)}-{r(g, HEX, 12)}\"",
    lambda g: "secret_name = \"db-credentials\"",
    lambda g: "token_type = 'bearer'",
    lambda g: "password_field = forms.CharField(widget=forms.PasswordInput)",
    lambda g: "PASSWORD_HASHERS = ['django.contrib.auth.hashers.Argon2PasswordHasher']",
    lambda g: "key = cache_key(user_id, page)",
    lambda g: "AZURE_STORAGE_KEY=<storage-account-key>",
    lambda g: "slack_token: xoxb-your-token-here",
    lambda g: "https://github.com/org/repo/blob/main/README.md",
    lambda g: f"version = \"{g.randint(1, 9)}.{g.randint(0, 30)}.{g.randint(0, 99)}\"",
    lambda g: "hf_token = os.getenv('HF_TOKEN')",
    lambda g: "npm_config_registry=https://registry.npmjs.org/",
    lambda g: "export PGPASSWORD=$(cat /run/secrets/pg)",
    lambda g: "<password>${env.DB_PASSWORD}</password>",
]


# 34th session, written before any rule for them: passwords on command lines, in credential objects built in
# code, and stated in prose. Drawn after the sets above, so those stay the same strings.
LATER_POSITIVE: dict[str, list[Callable[[random.Random], str]]] = {
    "cli-password": [
        lambda g: f"sshpass -p '{any_password(g)}' ssh deploy@10.0.3.7",
        lambda g: f"mysql -u root -p{strong_password(g)} shop < dump.sql",
        lambda g: f"mysqldump --user=backup --password={any_password(g)} --all-databases > all.sql",
        lambda g: f"psexec \\\\fileserver -u CORP\\admin -p {any_password(g)} cmd.exe",
        lambda g: f"redis-cli -h cache.internal -a {any_password(g)} ping",
        lambda g: f"curl -u deploy:{any_password(g)} https://nexus.internal/repository/raw/",
        lambda g: f"wget --user=ci --password={any_password(g)} https://artifacts.internal/build.tar.gz",
        lambda g: f"net use Z: \\\\nas\\share {any_password(g)} /user:CORP\\svc_backup",
        lambda g: f"smbclient //nas/backup -U svc%{any_password(g)}",
        lambda g: f"Connect-VIServer -Server vc01.corp.local -User admin@vsphere.local -Password '{any_password(g)}'",
        lambda g: f"$sec = ConvertTo-SecureString '{any_password(g)}' -AsPlainText -Force",
        lambda g: f"mongosh \"mongodb://db01:27017\" -u admin -p '{any_password(g)}' --authenticationDatabase admin",
        lambda g: f"openssl pkcs12 -export -in cert.pem -inkey key.pem -out cert.p12 -passout pass:{any_password(g)}",
        lambda g: f"keytool -importcert -keystore truststore.jks -storepass {any_password(g)} -file ca.crt -noprompt",
        lambda g: f"ldapsearch -x -H ldap://dc01 -D 'cn=admin,dc=corp,dc=io' -w {any_password(g)} -b dc=corp,dc=io",
        lambda g: f"sqlcmd -S db01 -U sa -P {any_password(g)} -Q \"SELECT 1\"",
    ],
    "code-credential": [
        lambda g: f"r = requests.get(url, auth=('svc', '{any_password(g)}'))",
        lambda g: f"auth = HTTPBasicAuth('ci-bot', '{any_password(g)}')",
        lambda g: f"session = aiohttp.ClientSession(auth=aiohttp.BasicAuth('api', '{any_password(g)}'))",
        lambda g: f"var cred = new NetworkCredential(\"svc_backup\", \"{any_password(g)}\");",
        lambda g: f"server.login('alerts@corp.io', '{any_password(g)}')",
        lambda g: f"ftp.login('deploy', '{any_password(g)}')",
        lambda g: f"conn.simple_bind_s('cn=admin,dc=corp,dc=io', '{any_password(g)}')",
        lambda g: f"return new PasswordAuthentication(\"svc\", \"{any_password(g)}\".toCharArray());",
        lambda g: f"Credentials creds = new UsernamePasswordCredentials(\"admin\", \"{any_password(g)}\");",
        lambda g: f"var entry = new DirectoryEntry(\"LDAP://dc01.corp.local\", \"CORP\\\\svc\", \"{any_password(g)}\");",
        lambda g: f"headers: {{ Authorization: 'Basic ' + btoa('svc:{any_password(g)}') }}",
    ],
    "prose-password": [
        lambda g: f"The admin password is '{any_password(g)}'.",
        lambda g: f"I set the database password to \"{any_password(g)}\" on staging.",
        lambda g: f"the root password for the VM is `{any_password(g)}`",
        lambda g: f"Use the password '{any_password(g)}' for the test account.",
        lambda g: f"password for user postgres is \"{any_password(g)}\"",
    ],
}

LATER_NEGATIVE: list[Callable[[random.Random], str]] = [
    lambda g: "mysql -u root -p shop < dump.sql",
    lambda g: 'sshpass -p "$SSH_PASS" ssh deploy@host',
    lambda g: 'curl -u "$USER:$TOKEN" https://api.internal/v1/items',
    lambda g: "keytool -list -keystore ks.jks -storepass:env KS_PASS",
    lambda g: "docker login -u ci --password-stdin < token.txt",
    lambda g: "r = requests.get(url, auth=(user, password))",
    lambda g: "server.login(username, password)",
    lambda g: "The password is stored in Vault, never in the repository.",
    lambda g: "Enter your password: ",
    lambda g: "net use Z: \\\\nas\\share /user:CORP\\svc *",
    lambda g: "openssl pkcs12 -export -in c.pem -out c.p12 -passout env:P12_PASS",
    lambda g: "$sec = ConvertTo-SecureString $plain -AsPlainText -Force",
    lambda g: "ldapsearch -x -D cn=admin,dc=corp -W -b dc=corp",
    lambda g: "auth = HTTPBasicAuth(os.environ['USER'], os.environ['PASS'])",
    lambda g: "mysqldump --user=backup --password --all-databases > all.sql",
]


def samples(per_generator: int = 6, seed: int = 20261202) -> list[dict]:
    """[{text, label: secret|not_secret, family}] — the same list on every call."""
    g = random.Random(seed)
    out = [{"text": gen(g), "label": "secret", "family": family}
           for family, gens in POSITIVE.items() for gen in gens for _ in range(per_generator)]
    out += [{"text": gen(g), "label": "not_secret", "family": "placeholder"} for gen in NEGATIVE for _ in range(2)]
    out += [{"text": gen(g), "label": "secret", "family": family}
            for family, gens in LATER_POSITIVE.items() for gen in gens for _ in range(3)]
    out += [{"text": gen(g), "label": "not_secret", "family": "placeholder"} for gen in LATER_NEGATIVE]
    return out
