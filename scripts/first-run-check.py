#!/usr/bin/env python3
"""The client check of scripts/first-run.sh: what a Matrix client does, through Nginx.

    first-run-check.py BASE_URL USER PASSWORD_FILE < homeserver.yaml

Registers USER with the registration shared secret read from homeserver.yaml on stdin (the
admin API, so this machine must be in the deployment's `admin_allow`), unless USER exists
already; logs in with the password kept in PASSWORD_FILE (made with mode 0600 on first use,
from the system's random source); creates a room, sends a message and reads it back.
Neither the secret nor the password is printed or put on a command line.
Standard library only: the first run installs nothing for it.
"""

import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request


def call(method, url, body=None, token=None):
    request = urllib.request.Request(url, method=method)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, data, timeout=30) as response:
        return json.load(response)


def shared_secret(homeserver_yaml):
    match = re.search(r"^registration_shared_secret:\s*(\S+)\s*$", homeserver_yaml, re.M)
    if not match:
        sys.exit("first-run-check: no registration_shared_secret in homeserver.yaml")
    return match.group(1).strip("'\"")


def password(path):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path) as file:
            return file.read().strip()
    value = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as file:
        file.write(value + "\n")
    return value


def register(base, user, secret, password):
    """Returns whether USER was registered now (False: it existed already)."""
    url = base + "/_synapse/admin/v1/register"
    nonce = call("GET", url)["nonce"]
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\0{user}\0{password}\0notadmin".encode())
    body = {"nonce": nonce, "username": user, "password": password, "admin": False,
            "mac": mac.hexdigest()}
    try:
        call("POST", url, body)
        return True
    except urllib.error.HTTPError as error:
        if json.load(error).get("errcode") == "M_USER_IN_USE":
            return False
        raise


def main():
    base, user, password_file = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    secret = shared_secret(sys.stdin.read())
    pw = password(password_file)
    new = register(base, user, secret, pw)
    login = call("POST", base + "/_matrix/client/v3/login", {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": pw,
    })
    token = login["access_token"]
    room = call("POST", base + "/_matrix/client/v3/createRoom", {"name": "first run"}, token)["room_id"]
    quoted = urllib.parse.quote(room)
    text = "hello from synprov's first run " + secrets.token_hex(4)
    call("PUT", f"{base}/_matrix/client/v3/rooms/{quoted}/send/m.room.message/{secrets.token_hex(8)}",
         {"msgtype": "m.text", "body": text}, token)
    messages = call("GET", f"{base}/_matrix/client/v3/rooms/{quoted}/messages?dir=b&limit=10", None, token)
    if not any(event.get("content", {}).get("body") == text for event in messages["chunk"]):
        sys.exit(f"first-run-check: the message sent to {room} did not come back")
    print(f"client check: {login['user_id']} {'registered, ' if new else ''}logged in, "
          f"created {room}, sent a message and read it back")


if __name__ == "__main__":
    main()
