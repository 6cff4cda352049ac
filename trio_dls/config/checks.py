"""Cross-checks: what the types cannot say about a config file.

This module owns the checks of relations between values, and between values
and the world outside the file: a mapping that names an unknown server,
duplicate server ids, a TLS server without a CA or with a client key but no
certificate, files that do not exist, where the skey comes from, a proxy half
given.  (A key of another protocol's servers is the converter's to refuse: it
sorts a server's flat keys into that protocol's settings class.)  The checks
walk the plain data defensively (anything may be of the wrong type), so that
they still report their findings when the strict conversion failed; a value
of the wrong type is the converter's to report, and is skipped here.  They
look at files and variables only through the injected ``Environment``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from trio_dls.config.convert import InvalidValueError, to_int
from trio_dls.config.model import (
    DEFAULT_MAX_CALLS_IN_FLIGHT,
    DEFAULT_MAX_PAGES_IN_MEMORY,
    SYSTEM_CAS,
    split_host_port,
)
from trio_dls.config.problems import KeyPath, Problem, ProblemKind

if TYPE_CHECKING:
    from collections.abc import Iterator

    from trio_dls.config.environment import Environment


def _problem(path: KeyPath, detail: str) -> Problem:
    return Problem(ProblemKind.CROSS_CHECK, path, detail=detail)


def value_at(data: object, *path: str | int) -> object:
    """The value at *path* in plain *data*, or None where the path leads nowhere."""
    node = data
    for part in path:
        if isinstance(part, str) and isinstance(node, dict):
            node = node.get(part)
        elif isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
        else:
            return None
    return node


def _readable_file(env: Environment, value: str) -> str | None:
    """Return why *value* is not a readable file, or None if it is."""
    path = env.path(value)
    try:
        # A directory on the way that may not be entered raises here.
        exists, is_file = path.exists(), path.is_file()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if not exists:
        return f"no such file: {path}"
    if not is_file:
        return f"not a file: {path}"
    if not os.access(path, os.R_OK):
        return f"cannot read {path}: permission denied"
    return None


def _check_servers(data: object, env: Environment) -> Iterator[Problem]:
    servers = value_at(data, "servers")
    if not isinstance(servers, list):
        return
    seen: set[str] = set()
    for index, server in enumerate(servers):
        if not isinstance(server, dict):
            continue
        server_id = server.get("id")
        if isinstance(server_id, str) and server_id.strip():
            if server_id in seen:
                yield _problem(
                    ("servers", index, "id"),
                    f"duplicate server id {server_id!r}; ids must be unique",
                )
            seen.add(server_id)
        protocol = server.get("protocol")
        cert = server.get("cert_filepath")
        is_tls = isinstance(protocol, str) and protocol.strip().upper() == "TCPSSL"
        if is_tls and not (isinstance(cert, str) and cert.strip()):
            yield _problem(
                ("servers", index, "cert_filepath"),
                "a TCPSSL server needs cert_filepath: the CA bundle (PEM) that "
                "signed the server's certificate, or 'system' to trust the "
                "operating system's CAs",
            )
        elif is_tls and isinstance(cert, str) and cert.strip() != SYSTEM_CAS:
            why = _readable_file(env, cert.strip())
            if why:
                yield _problem(("servers", index, "cert_filepath"), why)
        if is_tls:
            yield from _check_client_certificate(index, server, env)


def _check_client_certificate(
    index: int, server: dict[str, object], env: Environment
) -> Iterator[Problem]:
    cert = server.get("client_cert_filepath")
    key = server.get("client_key_filepath")
    has_cert = isinstance(cert, str) and bool(cert.strip())
    if isinstance(key, str) and key.strip() and not has_cert:
        yield _problem(
            ("servers", index, "client_key_filepath"),
            "a client key needs client_cert_filepath too",
        )
    for name, value in (("client_cert_filepath", cert), ("client_key_filepath", key)):
        if isinstance(value, str) and value.strip():
            why = _readable_file(env, value.strip())
            if why:
                yield _problem(("servers", index, name), why)


def _check_mappings(data: object) -> Iterator[Problem]:
    servers = value_at(data, "servers")
    if not isinstance(servers, list) or not servers:
        return  # stage 2 reports it; every reference would be noise
    ids = {
        s["id"]
        for s in (servers if isinstance(servers, list) else [])
        if isinstance(s, dict) and isinstance(s.get("id"), str)
    }
    mappings = value_at(data, "account", "endpoint_server_mappings")
    if not isinstance(mappings, list):
        return
    for index, mapping in enumerate(mappings):
        server = value_at(mapping, "server")
        if isinstance(server, str) and server.strip() and server not in ids:
            known = ", ".join(repr(i) for i in sorted(ids)) or "none"
            yield _problem(
                ("account", "endpoint_server_mappings", index, "server"),
                f"no server has the id {server!r} (servers defined: {known})",
            )


def _check_account(
    data: object, env: Environment, *, secrets: bool
) -> Iterator[Problem]:
    account = value_at(data, "account")
    if not isinstance(account, dict):
        return
    yield from _check_skey_source(account, env, secrets=secrets)
    ca_certs = account.get("ca_certs")
    if isinstance(ca_certs, str) and ca_certs.strip():
        why = _readable_file(env, ca_certs.strip())
        if why:
            yield _problem(("account", "ca_certs"), why)
    hostname = account.get("hostname")
    if isinstance(hostname, str) and ":" in hostname:
        host, port = split_host_port(hostname)
        if port is None or not 1 <= port <= 65535 or not host:  # noqa: PLR2004
            yield _problem(
                ("account", "hostname"),
                f"expected host or host:port (port 1 to 65535), got {hostname!r}",
            )


def _check_skey_source(
    account: dict[str, object], env: Environment, *, secrets: bool
) -> Iterator[Problem]:
    given = [k for k in ("skey", "skey_file", "skey_env") if k in account]
    if not given:
        yield Problem(
            ProblemKind.MISSING,
            ("account",),
            expected=("skey", "skey_file", "skey_env"),
        )
    elif len(given) > 1:
        yield _problem(
            ("account", given[1]),
            f"give only one of skey, skey_file and skey_env (found {', '.join(given)})",
        )
    elif not secrets:
        pass  # where the skey comes from need not be readable: it is not read
    elif given == ["skey_file"] and isinstance(account["skey_file"], str):
        why = _readable_file(env, account["skey_file"])
        if why:
            yield _problem(("account", "skey_file"), why)
    elif given == ["skey_env"] and isinstance(account["skey_env"], str):
        name = account["skey_env"]
        if not env.environ.get(name, "").strip():
            yield _problem(
                ("account", "skey_env"),
                f"the environment variable {name} is not set or empty",
            )


def _check_proxy(data: object) -> Iterator[Problem]:
    server = value_at(data, "dls_settings", "proxy", "proxy_server")
    port = value_at(data, "dls_settings", "proxy", "proxy_port")
    has_server = isinstance(server, str) and bool(server.strip())
    try:
        has_port = port is not None and to_int(port) != 0
    except InvalidValueError:
        return  # reported by stage 2
    if has_server and not has_port:
        yield _problem(
            ("dls_settings", "proxy", "proxy_port"),
            "proxy_server is set, so proxy_port is required (1 to 65535)",
        )
    elif has_port and not has_server:
        yield _problem(
            ("dls_settings", "proxy", "proxy_server"),
            "proxy_port is set, so proxy_server is required",
        )
    elif has_port and not 1 <= to_int(port) <= 65535:  # noqa: PLR2004
        yield _problem(
            ("dls_settings", "proxy", "proxy_port"),
            f"must be a port from 1 to 65535, got {port}",
        )
    yield from _check_proxy_credentials(data, has_server=has_server)


def _check_proxy_credentials(data: object, *, has_server: bool) -> Iterator[Problem]:
    path = ("dls_settings", "proxy")
    user = value_at(data, *path, "proxy_username")
    password = value_at(data, *path, "proxy_password")
    has_user = isinstance(user, str) and bool(user.strip())
    # The password is never echoed, not even its type (the converter says that).
    has_password = password is not None
    if has_user and not has_password:
        yield _problem(
            (*path, "proxy_password"),
            "proxy_username is set, so proxy_password is required",
        )
    elif has_password and not has_user:
        yield _problem(
            (*path, "proxy_username"),
            "proxy_password is set, so proxy_username is required",
        )
    elif has_user and not has_server:
        yield _problem(
            (*path, "proxy_server"),
            "proxy credentials are set, so proxy_server is required",
        )
    if has_user and isinstance(user, str) and ":" in user:
        # HTTP Basic joins user and password with a colon (RFC 7617).
        yield _problem((*path, "proxy_username"), "must not contain ':'")


def _check_directories(data: object, env: Environment) -> Iterator[Problem]:
    directory = value_at(data, "dls_settings", "checkpointing", "directory")
    if isinstance(directory, str) and directory.strip():
        path = env.path(directory.strip())
        if path.exists() and not path.is_dir():
            yield _problem(
                ("dls_settings", "checkpointing", "directory"),
                f"not a directory: {path}",
            )


def _check_bounds(data: object) -> Iterator[Problem]:
    # A call holds a page's place from its request on, so more calls than
    # pages could never be in flight: a setting that says otherwise is a mistake.
    path = ("dls_settings", "api")
    calls = value_at(data, *path, "max_calls_in_flight")
    pages = value_at(data, *path, "max_pages_in_memory")
    try:
        calls_n = DEFAULT_MAX_CALLS_IN_FLIGHT if calls is None else to_int(calls)
        pages_n = DEFAULT_MAX_PAGES_IN_MEMORY if pages is None else to_int(pages)
    except InvalidValueError:
        return  # the converter reports the type
    if 1 <= pages_n < calls_n:
        yield _problem(
            (*path, "max_calls_in_flight"),
            f"must not exceed max_pages_in_memory ({pages_n}): each call in "
            f"flight holds the place of the page it brings, got {calls_n}",
        )


def cross_check(
    data: object, env: Environment, *, secrets: bool = True
) -> list[Problem]:
    """Check what types cannot: references, duplicates, files, environment.

    Without *secrets*, the skey's file or variable is not looked at (the
    config must still say where the skey comes from, once).
    """
    return [
        *_check_servers(data, env),
        *_check_mappings(data),
        *_check_account(data, env, secrets=secrets),
        *_check_proxy(data),
        *_check_directories(data, env),
        *_check_bounds(data),
    ]
