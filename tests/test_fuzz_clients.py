"""Hostile clients at the socket level: stalled half-sent requests, lying Content-Length, clients
that hang up mid-stream. The proxy keeps answering everyone else, and never with a 5xx."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.fake_upstream import Reply


def raw_request(proxy, body: bytes, content_length: int | None = None, path="/v1/chat/completions") -> bytes:
    length = len(body) if content_length is None else content_length
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {proxy.master_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n").encode() + body


def open_socket(proxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=10)


def chat_ok(proxy, marker: str, timeout: float = 30.0) -> httpx.Response:
    return httpx.post(f"{proxy.base_url}/v1/chat/completions", headers=proxy.headers(), timeout=timeout,
                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": f"hi {marker}"}]})


def test_stalled_half_sent_requests_do_not_block_others(proxy, fake_upstream, marker):
    stalled = []
    try:
        for _ in range(40):
            s = open_socket(proxy)
            s.sendall(raw_request(proxy, b'{"model": "gpt-4o", "messages": [', content_length=100_000))
            stalled.append(s)
        r = chat_ok(proxy, marker)  # a blocked proxy would leave it unanswered past its timeout
        assert r.status_code == 200, r.text
        assert len(fake_upstream.find(marker)) == 1
    finally:
        for s in stalled:
            s.close()


@pytest.mark.parametrize("declared", [10, 0], ids=["short", "zero"])
def test_content_length_shorter_than_body_is_4xx(proxy, declared):
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}).encode()
    with open_socket(proxy) as s:
        s.sendall(raw_request(proxy, body, content_length=declared))
        head = s.recv(65536).split(b"\r\n", 1)[0]
    status = int(head.split()[1])
    assert 400 <= status < 500, head


def test_content_length_longer_than_body_then_hang_up(proxy, marker):
    with open_socket(proxy) as s:
        s.sendall(raw_request(proxy, b'{"model": "gpt-4o"}', content_length=5000))
    assert chat_ok(proxy, marker).status_code == 200


def test_clients_hanging_up_mid_stream(proxy, fake_upstream, marker):
    fake_upstream.script(Reply(content="slow answer " * 200, chunk_chars=4, match=marker, times=20))
    body = json.dumps({"model": "gpt-4o", "stream": True,
                       "messages": [{"role": "user", "content": f"stream {marker}"}]}).encode()
    for _ in range(20):
        with open_socket(proxy) as s:
            s.sendall(raw_request(proxy, body))
            assert s.recv(1024).startswith(b"HTTP/1.1 200")
    assert chat_ok(proxy, marker + "-after").status_code == 200  # served while 20 cut streams are torn down
    assert httpx.get(f"{proxy.base_url}/health/liveliness", timeout=10).status_code == 200


def test_many_idle_keepalive_connections(proxy, marker):
    idle = [open_socket(proxy) for _ in range(200)]
    try:
        assert chat_ok(proxy, marker).status_code == 200
    finally:
        for s in idle:
            s.close()
