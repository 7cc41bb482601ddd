"""Pipelines started without --runner run on the DirectRunner: Beam's default, PrismRunner,
would download a runner binary at run time. Each pipeline, and the refresher, runs here
with every connection off this machine and every URL opened recorded and refused."""

import json
import logging
import socket
import urllib.request

import pytest
from apache_beam.options.pipeline_options import StandardOptions

from beam_pipelines import chunk_corpus, embed_and_index, make_pretraining_examples
from beam_pipelines.pipeline_options import pipeline_options

from test_refresh import corpus, make_refresher, place_export  # noqa: F401  (corpus: a fixture)

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture
def offline(monkeypatch, caplog):
    """Records, and refuses, every connection to another host and every URL opened; yields the list."""
    attempts = []
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            attempts.append(f"connect {address}")
            raise OSError(f"a test may not connect to {address}")
        return connect(sock, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK and host is not None:
            attempts.append(f"resolve {host}")
            raise OSError(f"a test may not resolve {host}")
        return getaddrinfo(host, *args, **kwargs)

    def guarded_urlopen(url, *args, **kwargs):
        attempts.append(f"urlopen {getattr(url, 'full_url', url)}")
        raise OSError(f"a test may not open {url}")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(urllib.request, "urlopen", guarded_urlopen)
    caplog.set_level(logging.INFO)
    return attempts


def _prism_logged(caplog):
    return "prism" in caplog.text.lower()


def test_no_runner_means_the_direct_runner_and_a_named_one_is_kept():
    assert pipeline_options([]).view_as(StandardOptions).runner == "DirectRunner"
    named = pipeline_options(["--runner=DataflowRunner", "--project=p"])
    assert named.view_as(StandardOptions).runner == "DataflowRunner"
    assert named.get_all_options()["project"] == "p"


def test_chunk_corpus_without_runner_fetches_nothing(tmp_path, offline, caplog):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "a", "title": "A", "text": "Tesla was born in 1856. He died in 1943."}) + "\n")
    manifest = chunk_corpus.run([f"--input={docs}", f"--output_dir={tmp_path / 'blocks'}", "--config=tiny"])
    assert manifest.num_blocks == 1
    assert offline == [] and not _prism_logged(caplog)


def test_the_guard_sees_what_beams_default_runner_would_fetch(tmp_path, offline, caplog):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "a", "title": "A", "text": "Tesla was born in 1856."}) + "\n")
    with pytest.raises(Exception):
        chunk_corpus.run([f"--input={docs}", f"--output_dir={tmp_path / 'blocks'}", "--config=tiny",
                          "--runner=PrismRunner"])
    assert _prism_logged(caplog) and any("github.com" in attempt for attempt in offline), offline


def test_make_pretraining_examples_without_runner_fetches_nothing(corpus, tmp_path, offline, caplog):  # noqa: F811
    manifest = make_pretraining_examples.run([f"--blocks_dir={corpus['blocks_dir']}",
                                              f"--output_dir={tmp_path / 'examples'}", "--config=tiny"])
    assert manifest.num_examples > 0
    assert offline == [] and not _prism_logged(caplog)


def test_embed_and_index_without_runner_fetches_nothing(corpus, tmp_path, offline, caplog):  # noqa: F811
    version = embed_and_index.run([f"--blocks_dir={corpus['blocks_dir']}", f"--embedder_export={corpus['exports'][0]}",
                                   f"--index_root={tmp_path / 'index'}", "--config=tiny"])
    assert version.startswith(str(tmp_path / "index"))
    assert offline == [] and not _prism_logged(caplog)


def test_the_refresher_fetches_nothing(corpus, tmp_path, offline, caplog):  # noqa: F811
    place_export(tmp_path / "model", 5, corpus["exports"][0])
    version = make_refresher(corpus, tmp_path).refresh_once()
    assert version is not None and version.startswith(str(tmp_path / "index"))
    assert offline == [] and not _prism_logged(caplog)
