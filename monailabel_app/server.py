"""What uvicorn serves: MONAI Label's FastAPI app behind a small ASGI layer of our own, started with
``monailabel start_server ... --uvicorn_app monailabel_app.server:app`` (the repository root on ``PYTHONPATH``).

The layer does three things:

1. A POST/PUT/PATCH without ``Content-Type`` gets ``application/json``: QuPath's MONAI Label extension posts its JSON
   bodies (``/infer/wsi``, ``/train``, ``/activelearning``) without one, which FastAPI >= 0.132 refuses with 422.
2. With ``--conf auth_users <file>``, a local login the extension knows: ``GET /auth/`` (enabled),
   ``POST /auth/token`` (form ``username``, ``password`` -> ``{access_token, token_type}``), ``GET /auth/token/valid``;
   every other request needs ``Authorization: Bearer <token>`` (401 without). Passwords are stored as salted
   PBKDF2-SHA256 hashes; tokens are signed with HMAC-SHA256 by a key drawn at each start, expire after
   ``--conf auth_token_hours`` (default 12) and die with the user's entry (removed, or a new password).
3. Without login, only this machine's requests are served (403 for others), whatever ``--host`` says.

Users: ``python3 -m monailabel_app.server add-user <users file> <name>`` (asks the password; the file is read at each
request, so adding or removing a user needs no restart).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import sys
import time
import urllib.parse
from pathlib import Path

__all__ = ["Front", "TokenSigner", "add_user", "hash_password", "read_users", "verify_password"]

ITERATIONS = 600_000  # PBKDF2-SHA256 rounds (OWASP 2023)
_SCHEME = "pbkdf2_sha256"
_MAX_FORM = 16_384  # bytes of a login form at most
_front = None  # the layer uvicorn serves, once built (see __getattr__)


# ------------------------------------------------------------------------------------------------
# users and tokens
# ------------------------------------------------------------------------------------------------
def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`` of ``password`` with a random 16-byte salt."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{_SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (:func:`hash_password`'s format), in constant time."""
    scheme, iterations, salt, digest = stored.split("$")
    if scheme != _SCHEME:
        return False
    computed = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return hmac.compare_digest(computed.hex(), digest)


_DUMMY = hash_password("not a password", b"\0" * 16)  # checked for unknown names: the same time as a known one


def read_users(path: str | Path) -> dict[str, str]:
    """``{name: stored hash}`` from the users file: one ``name:pbkdf2_sha256$...`` line per user, ``#`` comments.

    Raises:
        FileNotFoundError: no such file (the message names the setting).
        ValueError: a malformed line (file and line number named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"users file {path} (--conf auth_users) does not exist; create it with "
                                f"`python3 -m monailabel_app.server add-user {path} <name>`.")  # fmt: skip
    users = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, stored = line.partition(":")
        parts = stored.split("$")
        if not name or len(parts) != 4 or parts[0] != _SCHEME or not parts[1].isdigit():
            raise ValueError(f"{path}, line {number}: expected `name:{_SCHEME}$<iterations>$<salt>$<hash>`.")
        users[name] = stored
    return users


def add_user(path: str | Path, name: str, password: str) -> None:
    """Add ``name`` to the users file (or give it a new password), written atomically, readable by its owner only."""
    if not name or any(c in name for c in ":#") or name != name.strip() or len(name.split()) != 1:
        raise ValueError(f"user name {name!r}: one word without ':' or '#'.")
    if len(password) < 8:
        raise ValueError("the password must have at least 8 characters.")
    path = Path(path)
    users = read_users(path) if path.exists() else {}
    users[name] = hash_password(password)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# medt-monai MONAI Label users (monailabel_app/server.py): name:pbkdf2_sha256$rounds$salt$hash\n")
        f.writelines(f"{n}:{h}\n" for n, h in users.items())
    tmp.replace(path)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenSigner:
    """Tokens ``<payload>.<HMAC-SHA256 of payload>``; the payload holds the user, the expiry and a fingerprint of the
    user's stored hash (a new password or a removed user voids the user's tokens)."""

    def __init__(self, lifetime_s: float, key: bytes | None = None) -> None:
        self.lifetime_s = float(lifetime_s)
        self.key = secrets.token_bytes(32) if key is None else key

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())

    def issue(self, name: str, stored: str) -> str:
        claims = {"sub": name, "exp": int(time.time() + self.lifetime_s), "fp": stored[-16:]}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str, users: dict[str, str]) -> str | None:
        """The token's user if the signature holds, it has not expired and the user's entry is unchanged."""
        payload, _, signature = token.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        stored = users.get(claims.get("sub", ""))
        if stored is None or claims.get("exp", 0) < time.time() or claims.get("fp") != stored[-16:]:
            return None
        return claims["sub"]


# ------------------------------------------------------------------------------------------------
# the ASGI layer
# ------------------------------------------------------------------------------------------------
async def _send_json(send, status: int, body: dict, headers: tuple = ()) -> None:
    data = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": data})


async def _read_body(receive, limit: int) -> bytes | None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body"):
            return body


def _is_local(scope) -> bool:
    client = scope.get("client")
    if not client:
        return True  # a Unix socket
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


class Front:
    """The ASGI layer around ``inner`` (MONAI Label's app): see the module's docstring.

    Args:
        inner: the ASGI app served behind the layer.
        users_file: the users file; None: no login, and only loopback clients are served.
        token_hours: how long a token is valid.
    """

    def __init__(self, inner, users_file: str | Path | None = None, token_hours: float = 12.0) -> None:
        self.inner = inner
        self.users_file = Path(users_file) if users_file else None
        if self.users_file is not None:
            read_users(self.users_file)  # fail at start on a missing or malformed file
        if not token_hours > 0:
            raise ValueError(f"--conf auth_token_hours must be > 0, got {token_hours!r}.")
        self.signer = TokenSigner(token_hours * 3600)

    def _user(self, scope) -> str | None:
        headers = dict(scope.get("headers") or [])
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.signer.verify(token.strip(), read_users(self.users_file))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.inner(scope, receive, send)  # lifespan
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            if not any(k == b"content-type" for k, _ in scope["headers"]):
                scope = {**scope, "headers": [*scope["headers"], (b"content-type", b"application/json")]}
        if self.users_file is None:
            if _is_local(scope):
                return await self.inner(scope, receive, send)
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            detail = "this server has no login (--conf auth_users) and answers only its own machine"
            return await _send_json(send, 403, {"detail": detail})
        path = scope["path"].rstrip("/")
        if scope["type"] == "http" and path.startswith("/auth"):
            return await self._auth(scope, receive, send, path)
        if self._user(scope) is None:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            detail = "not authenticated: log in with POST /auth/token, then send Authorization: Bearer <token>"
            return await _send_json(send, 401, {"detail": detail}, ((b"www-authenticate", b"Bearer"),))
        return await self.inner(scope, receive, send)

    async def _auth(self, scope, receive, send, path: str) -> None:
        method = scope["method"]
        if path == "/auth" and method == "GET":
            return await _send_json(send, 200, {"enabled": True, "client_id": "medt-monai", "realm": "local"})
        if path == "/auth/token/valid" and method == "GET":
            user = self._user(scope)
            if user is None:
                return await _send_json(send, 401, {"detail": "token missing, invalid or expired"})
            return await _send_json(send, 200, {"username": user})
        if path == "/auth/token" and method == "POST":
            body = await _read_body(receive, _MAX_FORM)
            form = urllib.parse.parse_qs((body or b"").decode("utf-8", "replace"))
            name, password = (form.get(k, [""])[0] for k in ("username", "password"))
            users = read_users(self.users_file)
            stored = users.get(name)
            ok = await asyncio.to_thread(verify_password, password, stored or _DUMMY)
            if not (ok and stored):
                return await _send_json(send, 401, {"detail": "wrong user name or password"})
            token = self.signer.issue(name, stored)
            return await _send_json(send, 200, {"access_token": token, "token_type": "bearer"})
        return await _send_json(send, 404, {"detail": f"no {method} {scope['path']}"})


def _build():
    """The layer around ``monailabel.app:app`` with the server's ``--conf`` (set by ``start_server`` before uvicorn
    imports this module)."""
    from monailabel.app import app as inner
    from monailabel.config import settings

    conf = settings.MONAI_LABEL_APP_CONF or {}
    users = conf.get("auth_users") or None
    if users and settings.MONAI_LABEL_AUTH_ENABLE:
        raise ValueError("--conf auth_users and MONAI_LABEL_AUTH_ENABLE (Keycloak) are both set: use one.")
    return Front(inner, users, float(conf.get("auth_token_hours", 12)))


def __getattr__(name: str):
    if name == "app":  # built on first use: the CLI below must not import MONAI Label
        global _front
        if _front is None:
            _front = _build()
        return _front
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """``add-user <users file> <name> [--password-stdin]``: add a user or set a new password."""
    parser = argparse.ArgumentParser(prog="python3 -m monailabel_app.server")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add-user", help="add a user to the users file, or give a user a new password")
    add.add_argument("users_file")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    args = parser.parse_args(argv)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            sys.exit("the two passwords differ; nothing changed.")
    try:
        add_user(args.users_file, args.name, password)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(str(e))
    print(f"{args.users_file}: {args.name} saved")


if __name__ == "__main__":
    main()
