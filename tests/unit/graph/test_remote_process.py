"""Remote process definitions (tileserver.graph.remote_process): fetched from a real local
HTTP server, checked, cached; refused hosts, schemes, redirects, sizes, slowness and bodies
each a ProcessNamespaceInvalid that says why. Through the API: tests/api/openeo/v1/
test_remote_processes.py."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support.process_server import Answer, ProcessServer
from tileserver.errors import ProcessGraphError, ProcessNamespaceInvalid, UnknownProcess
from tileserver.graph import udp
from tileserver.graph.remote_process import (
    FetchPolicy,
    RemoteProcesses,
    is_remote_namespace,
    parse_networks,
    remote_key,
)
from tileserver.graph.v1 import FlatGraphParser
from tileserver.processes import REGISTRY, is_predefined
from tileserver.settings import load_settings

LOOPBACK = parse_networks(["127.0.0.1"])
TWICE = {"id": "twice", "parameters": [{"name": "x", "schema": {"type": "number"}}],
         "process_graph": {"m": {"process_id": "multiply", "arguments": {
             "x": {"from_parameter": "x"}, "y": 2}, "result": True}}}


@pytest.fixture
def server():
    srv = ProcessServer()
    yield srv
    srv.close()


def policy_of(**changes) -> FetchPolicy:
    """The policy of the shipped settings, with ``changes``."""
    return dataclasses.replace(FetchPolicy.from_settings(load_settings()), **changes)


def fetcher(**changes) -> RemoteProcesses:
    """A fetcher of its own (its own cache) allowing loopback unless told otherwise."""
    return RemoteProcesses(policy_of(**{"allow": LOOPBACK, **changes}))


def reason(exc_info) -> str:
    return exc_info.value.reason


def test_namespaces_that_are_urls():
    assert is_remote_namespace("https://example.org/p.json")
    assert is_remote_namespace("file:///etc/passwd")
    for name in (None, "user", "backend", "core", 3):
        assert not is_remote_namespace(name)
    assert remote_key("twice", "http://h/p") == "twice@http://h/p"


def test_a_single_process_and_a_list(server):
    one = server.json("/twice.json", TWICE)
    listed = server.json("/list.json", {"processes": [
        {"id": "other", "process_graph": TWICE["process_graph"]}, TWICE], "links": []})
    f = fetcher()
    assert f.definition("twice", one) == TWICE
    assert f.definition("twice", listed) == TWICE
    with pytest.raises(ProcessNamespaceInvalid) as exc:
        f.definition("thrice", one)  # the node's process_id must be the document's id
    assert "is 'twice', not 'thrice'" in reason(exc)
    with pytest.raises(ProcessNamespaceInvalid) as exc:
        f.definition("thrice", listed)
    assert "has no process 'thrice'" in reason(exc)
    assert exc.value.code == "ProcessNamespaceInvalid" and exc.value.status == 400
    assert exc.value.message.startswith(
        f"The value passed for namespace '{listed}' in process 'thrice' is invalid: ")


def test_documents_are_cached(server):
    url = server.json("/twice.json", TWICE)
    f = fetcher()
    for _ in range(3):
        f.definition("twice", url)
    assert server.hits["/twice.json"] == 1 and f.fetches == 1
    assert fetcher(cache_ttl=0).document(url) == TWICE  # a fetcher of its own: no cache
    assert server.hits["/twice.json"] == 2


def test_private_and_special_addresses_are_refused_unless_allowed(server):
    url = server.json("/twice.json", TWICE)
    strict = RemoteProcesses(policy_of())
    with pytest.raises(ProcessNamespaceInvalid) as exc:
        strict.definition("twice", url)
    assert "127.0.0.1 is a loopback address" in reason(exc)
    assert server.hits["/twice.json"] == 0  # refused before connecting
    policy = policy_of()
    for address, kind in [("169.254.169.254", "link-local"), ("10.1.2.3", "private"),
                          ("192.168.0.1", "private"), ("172.16.5.4", "private"),
                          ("::1", "loopback"), ("fe80::1", "link-local"),
                          ("fd00::1", "private"), ("::ffff:127.0.0.1", "loopback"),
                          ("::ffff:169.254.169.254", "link-local"),
                          ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"),
                          ("240.0.0.1", "reserved")]:
        refusal = policy.refusal(address)
        assert refusal == f"{address} is a {kind} address", refusal
    assert "100.64.0.1 is not a public address" == policy.refusal("100.64.0.1")
    for public in ("1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"):
        assert policy.refusal(public) is None
    allowing = policy_of(allow=parse_networks(["10.0.0.0/8", "::1"]))
    assert allowing.refusal("10.200.0.1") is None and allowing.refusal("::1") is None
    assert allowing.refusal("192.168.0.1") is not None
    with pytest.raises(ValueError, match="no address or network"):
        parse_networks(["example.org"])


@pytest.mark.parametrize("url, words", [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://10.0.0.1/p.json", "10.0.0.1 is a private address"),
    ("http://[::1]/p.json", "::1 is a loopback address"),
    ("http://localhost:1/p.json", "loopback address"),
    ("file:///etc/passwd", "only http and https URLs"),
    ("ftp://example.org/p.json", "only http and https URLs"),
    ("gopher://127.0.0.1:6379/_INFO", "only http and https URLs"),
    ("http:///p.json", "the URL has no host"),
    ("http://example.org:99999/p.json", "not a valid URL"),
    ("http://no-such-host.invalid/p.json", "does not resolve"),
])
def test_refused_urls(url, words):
    with pytest.raises(ProcessNamespaceInvalid) as exc:
        RemoteProcesses(policy_of()).definition("p", url)
    assert words in reason(exc)


def test_redirects_are_checked_hop_by_hop(server):
    target = server.json("/twice.json", TWICE)
    hop = server.redirect("/hop", "/twice.json")
    f = fetcher()
    assert f.definition("twice", hop) == TWICE  # relative Location, allowed host
    to_metadata = server.redirect("/meta", "http://169.254.169.254/latest/meta-data/")
    with pytest.raises(ProcessNamespaceInvalid) as exc:
        f.definition("twice", to_metadata)
    assert "169.254.169.254 is a link-local address" in reason(exc)
    to_file = server.redirect("/file", "file:///etc/passwd")
    with pytest.raises(ProcessNamespaceInvalid) as exc:
        f.definition("twice", to_file)
    assert "only http and https URLs" in reason(exc) and "redirected to file://" in reason(exc)
    # a redirect to another loopback address than the one allowed (127.0.0.1): refused
    # before anything connects to it
    bounce = server.redirect("/bounce", target.replace("127.0.0.1", "127.0.0.2"))
    with pytest.raises(ProcessNamespaceInvalid) as exc:
        f.definition("twice", bounce)
    assert "127.0.0.2 is a loopback address" in reason(exc)
    assert server.hits["/twice.json"] == 1  # only the allowed fetch above reached it
    loop = server.redirect("/loop", "/loop")
    with pytest.raises(ProcessNamespaceInvalid) as exc:
        fetcher(max_redirects=2).definition("twice", loop)
    assert "more than 2 redirects" in reason(exc)
    assert server.hits["/loop"] == 3


def test_size_time_status_and_body_limits(server):
    big = {**TWICE, "description": "x" * 5000}
    declared = server.json("/big.json", big)
    streamed = server.answer("/stream.json", Answer(
        server.answers["/big.json"].body, send_length=False))
    f = fetcher(max_bytes=4096)
    for url in (declared, streamed):
        with pytest.raises(ProcessNamespaceInvalid) as exc:
            f.definition("twice", url)
        assert "larger than 4096 bytes" in reason(exc)
    slow = server.answer("/slow.json", Answer(b"{}", delay=3.0))
    with pytest.raises(ProcessNamespaceInvalid) as exc:
        fetcher(timeout=0.5).definition("twice", slow)
    assert "timed out" in reason(exc) or "did not arrive within" in reason(exc)
    with pytest.raises(ProcessNamespaceInvalid) as exc:
        f.definition("twice", server.url + "/missing.json")
    assert "answered HTTP 404" in reason(exc)
    for path, body, words in [("/html", b"<html>hi</html>", "no JSON"),
                              ("/array", b"[1, 2]", "no JSON object"),
                              ("/nothing", b"{\"id\": \"twice\"}", "neither a process"),
                              ("/nograph", b"{\"id\": \"twice\", \"process_graph\": 3}",
                               "no 'process_graph' object")]:
        url = server.answer(path, Answer(body))
        with pytest.raises(ProcessNamespaceInvalid) as exc:
            f.definition("twice", url)
        assert words in reason(exc), path
    assert f.fetches == 2  # failures are not cached; the two JSON objects are


def test_collect_and_parse_expand_remote_processes(server):
    url = server.json("/twice.json", TWICE)
    graph = {"a": {"process_id": "twice", "namespace": url, "arguments": {"x": 21},
                   "result": True}}
    f = fetcher()
    found = udp.collect(graph, lambda ids: {}, is_predefined, f.definition)
    assert found == {remote_key("twice", url): TWICE}
    root = FlatGraphParser(REGISTRY).parse(graph, processes=found)
    assert root.process_id == "multiply" and root.args["x"] == 21
    inline = FlatGraphParser(REGISTRY).parse(
        {"m": {"process_id": "multiply", "arguments": {"x": 21, "y": 2}, "result": True}})
    assert root.hash == inline.hash  # expanded by content: the same cache entries
    # without the fetcher (remote processes off) the node is unsupported
    assert udp.collect(graph, lambda ids: {}, is_predefined) == {}
    with pytest.raises(UnknownProcess, match="does not load remote process definitions"):
        FlatGraphParser(REGISTRY).parse(graph)
    # a remote process that calls itself
    server.json("/self.json", {"id": "me", "process_graph": {"a": {
        "process_id": "me", "namespace": server.url + "/self.json", "arguments": {},
        "result": True}}})
    me = {"a": {"process_id": "me", "namespace": server.url + "/self.json",
                "arguments": {}, "result": True}}
    found = udp.collect(me, lambda ids: {}, is_predefined, f.definition)
    with pytest.raises(Exception, match="calls itself"):
        FlatGraphParser(REGISTRY).parse(me, processes=found)


def test_a_graph_calls_a_bounded_number_of_remote_processes(server):
    """Each fetch may take the whole timeout: one graph may not make the server wait for
    more than MAX_REMOTE_PROCESSES of them."""
    urls = [server.json(f"/p{i}.json", {**TWICE, "id": f"p{i}"})
            for i in range(udp.MAX_REMOTE_PROCESSES + 1)]
    nodes = {f"n{i}": {"process_id": f"p{i}", "namespace": url, "arguments": {"x": i}}
             for i, url in enumerate(urls)}
    nodes["n0"]["result"] = True
    f = fetcher()
    with pytest.raises(ProcessGraphError, match="more than 10 remote process definitions"):
        udp.collect(nodes, lambda ids: {}, is_predefined, f.definition)
    assert f.fetches == 0  # refused before fetching any
    del nodes[f"n{udp.MAX_REMOTE_PROCESSES}"]
    assert len(udp.collect(nodes, lambda ids: {}, is_predefined, f.definition)) == 10
