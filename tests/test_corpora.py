"""Named corpora: catalogue, fetch once from a local file:// mirror, verify, reuse; never the network."""

from __future__ import annotations

import email.message
import fnmatch
import hashlib
import http.server
import io
import itertools
import json
import os
import re
import stat
import sys
import threading
import urllib.request
import urllib.response
import zipfile
from pathlib import Path

import pytest

from charrnn import cli, corpora, writes
from charrnn.__main__ import run
from charrnn.errors import CharRNNError
from conftest import ENGLISH, TINY_MODEL

TEXT = ENGLISH * 20


def mirror(tmp_path: Path, entries: dict) -> Path:
    """Write a catalogue whose URLs point at local files."""
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def zipped(path: Path, member: str, data: bytes) -> Path:
    """A zip at `path` holding `data` under the name `member`."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(member, data)
    return path


def plain_entry(source: Path, **changes) -> dict:
    data = source.read_bytes()
    entry = {"url": source.as_uri(), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
             "license": "public domain", "description": "a tiny test corpus"}
    return {**entry, **changes}


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    source = tmp_path / "mirror" / "tiny.txt"
    source.parent.mkdir()
    source.write_text(TEXT, encoding="utf-8")
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))

    def make(**changes) -> Path:
        path = mirror(tmp_path, {"tiny": plain_entry(source, **changes)})
        monkeypatch.setenv("CHARRNN_CATALOGUE", str(path))
        return source

    return make


def test_shipped_catalogue_is_complete_and_invents_no_hash(monkeypatch):
    monkeypatch.delenv("CHARRNN_CATALOGUE", raising=False)
    entries = corpora.load_catalogue()
    assert {"tinyshakespeare", "enwik8", "text8"} <= set(entries)
    shakespeare = entries["tinyshakespeare"]
    assert shakespeare.sha256 == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert shakespeare.bytes == 1115394
    for entry in entries.values():
        assert entry.url.startswith("http") and entry.license and entry.description
        assert entry.sha256 is None and entry.unverified or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)


def test_the_catalogue_is_package_data_so_a_wheel_carries_it():
    # A file beside the package (not in it) works from a checkout but is missing after `pip install .`.
    package = Path(corpora.__file__).parent
    assert corpora.CATALOGUE.parent == package and corpora.CATALOGUE.is_file()
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((package.parent / "pyproject.toml").read_text("utf-8"))
    declared = pyproject["tool"]["setuptools"]["package-data"]["charrnn"]
    assert any(fnmatch.fnmatch(corpora.CATALOGUE.name, pattern) for pattern in declared)


def test_fetch_downloads_once_then_reuses(catalogue):
    source = catalogue()
    seen = []
    path = corpora.fetch("tiny", progress=lambda done, total: seen.append((done, total)))
    assert path.read_text("utf-8") == TEXT and path.is_relative_to(writes.user_cache_dir())
    assert seen and seen[-1][0] == len(TEXT.encode())
    source.unlink()  # the mirror is gone: a second fetch must not need it
    assert corpora.fetch("tiny") == path


def test_a_download_with_the_wrong_hash_is_refused_and_removed(catalogue):
    catalogue(sha256="0" * 64)
    with pytest.raises(CharRNNError, match="sha256"):
        corpora.fetch("tiny")
    assert not any(corpora.corpus_dir("tiny").iterdir())


def test_offline_error_says_where_to_put_the_file(catalogue, tmp_path):
    source = catalogue()
    missing = tmp_path / "nowhere.txt"
    catalogue(url=missing.as_uri())
    with pytest.raises(CharRNNError) as raised:
        corpora.fetch("tiny")
    target = corpora.corpus_dir("tiny") / "tiny.txt"
    assert str(target) in str(raised.value)
    target.write_bytes(source.read_bytes())  # put there by hand: verified, then used
    assert corpora.fetch("tiny") == target
    target.write_text("tampered", encoding="utf-8")
    with pytest.raises(CharRNNError, match="delete it"):
        corpora.fetch("tiny")


def test_zip_archive_without_hash_warns_and_extracts(tmp_path, monkeypatch):
    archive = zipped(tmp_path / "tiny.zip", "tiny", TEXT.encode())
    entry = plain_entry(archive, sha256=None, unverified="none published", archive="zip", member="tiny")
    monkeypatch.setenv("CHARRNN_CATALOGUE", str(mirror(tmp_path, {"tiny": entry})))
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    messages = []
    path = corpora.fetch("tiny", warn=messages.append)
    assert path.read_text("utf-8") == TEXT
    assert any("cannot be verified" in m for m in messages)
    assert corpora.fetch("tiny", warn=messages.append) == path


def test_unknown_name_lists_the_known_ones(catalogue):
    catalogue()
    with pytest.raises(CharRNNError, match="known: tiny"):
        corpora.fetch("nope")


def test_train_by_name_then_list_shows_it_cached(cli, tmp_path):
    source = tmp_path / "mirror.txt"
    source.write_text(TEXT, encoding="utf-8")
    cli.env["CHARRNN_CATALOGUE"] = str(mirror(tmp_path, {"tiny": plain_entry(source)}))
    trained = cli("train", "tiny", "--steps", "2", "-o", "run", *TINY_MODEL)
    assert "downloading corpus 'tiny'" in trained.stderr
    listed = cli("corpus", "list", "--json")
    (record,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert record["name"] == "tiny" and record["cached"] is True
    unknown = cli("train", "absent", "--steps", "1", check_rc=1)
    assert unknown.stderr.startswith("charrnn: error: absent") and "corpus list" in unknown.stderr


def test_a_catalogue_that_is_not_there_is_one_line_and_exit_1(cli, tmp_path):
    cli.env["CHARRNN_CATALOGUE"] = str(tmp_path / "moved.json")
    for command in (["corpus", "list"], ["corpus", "list", "--json"], ["train", "tiny", "--steps", "1"]):
        refused = cli(*command, check_rc=1)
        assert refused.stdout == "" and len(refused.stderr.splitlines()) == 1, refused.stderr
        assert "moved.json: no such file" in refused.stderr and "CHARRNN_CATALOGUE" in refused.stderr


@pytest.mark.parametrize("damage, said", [
    (lambda data: data + b"more", "bytes, the catalogue says"),  # grown
    (lambda data: data[:-1], "bytes, the catalogue says"),  # cut short
    (lambda data: data[::-1], "has sha256"),  # the same length, other content
])
def test_a_damaged_cached_corpus_is_listed_as_damaged_with_what_to_do(cli, tmp_path, damage, said):
    source = tmp_path / "mirror.txt"
    source.write_text(TEXT, encoding="utf-8")
    cli.env["CHARRNN_CATALOGUE"] = str(mirror(tmp_path, {"tiny": plain_entry(source)}))
    cached = Path(cli("corpus", "fetch", "tiny", "-q").stdout.strip())
    cached.write_bytes(damage(cached.read_bytes()))
    listed = cli("corpus", "list")
    assert "damaged" in listed.stdout and "cached" not in listed.stdout
    (warning,) = listed.stderr.splitlines()
    assert "'tiny' is damaged" in warning and said in warning
    assert "delete it" in warning and "corpus fetch tiny" in warning
    (record,) = [json.loads(line) for line in cli("corpus", "list", "--json").stdout.splitlines()]
    assert record["cached"] is False and said in record["damaged"]
    cached.unlink()
    cli("corpus", "fetch", "tiny", "-q")  # the advice works
    assert json.loads(cli("corpus", "list", "--json").stdout)["damaged"] is None


# --- Private stays private -----------------------------------------------------------------------------------------

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_cache_is_private_and_no_copy_is_more_readable_than_its_source(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    sources = {"open": 0o644, "owner": 0o400}
    entries = {}
    for name, source_mode in sources.items():
        source = tmp_path / f"{name}.txt"
        source.write_text(TEXT, encoding="utf-8")
        source.chmod(source_mode)
        entries[name] = plain_entry(source)
    archive = zipped(tmp_path / "packed.zip", "packed", TEXT.encode())
    entries["packed"] = plain_entry(archive, sha256=None, unverified="a test", archive="zip", member="packed")
    monkeypatch.setenv("CHARRNN_CATALOGUE", str(mirror(tmp_path, entries)))
    umask = os.umask(0o022)  # the usual umask, under which the cache was world-readable
    try:
        paths = {name: corpora.fetch(name, warn=lambda message: None) for name in entries}
        assert {name: mode(path) for name, path in paths.items()} == {"open": 0o600, "owner": 0o400, "packed": 0o600}
        folders = [corpora.corpora_root(), *(corpora.corpus_dir(name) for name in entries)]
        assert {oct(mode(folder)) for folder in folders} == {oct(0o700)}
        paths["open"].chmod(0o644)  # as an older charrnn left it: tightened when next used
        corpora.corpus_dir("open").chmod(0o755)
        corpora.fetch("open")
        assert (mode(paths["open"]), mode(corpora.corpus_dir("open"))) == (0o600, 0o700)
    finally:
        os.umask(umask)


# --- A stranger's catalogue is data, never paths -------------------------------------------------------------------

HOSTILE = [
    pytest.param("../../../x", None, id="name climbs out"),
    pytest.param("..", None, id="name is .."),
    pytest.param("a/b", None, id="name with a folder"),
    pytest.param("tiny", "../x", id="member climbs out"),
    pytest.param("tiny", "ABSOLUTE", id="member is an absolute path"),
    pytest.param("tiny", "sub/x", id="member in a folder"),
]


@pytest.mark.parametrize("name, member", HOSTILE)
def test_a_strangers_catalogue_cannot_name_a_path_outside_the_cache(tmp_path, monkeypatch, name, member):
    cache_dir = tmp_path / "a" / "b" / "c" / "d" / "cache"  # deep: should a name climb out, it lands in tmp_path
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(cache_dir))
    (tmp_path / "mirror").mkdir()
    if member is None:
        source = tmp_path / "mirror" / "x.txt"
        source.write_text(TEXT, encoding="utf-8")
        entry = plain_entry(source)
    else:
        if member == "ABSOLUTE":
            member = str(tmp_path / "absolute" / "x")
            (tmp_path / "absolute").mkdir()  # so that a write there would succeed
        source = zipped(tmp_path / "mirror" / "x.zip", member, TEXT.encode())
        entry = plain_entry(source, sha256=None, unverified="a test", archive="zip", member=member)
    catalogue_file = mirror(tmp_path, {name: entry})
    monkeypatch.setenv("CHARRNN_CATALOGUE", str(catalogue_file))
    with pytest.raises(CharRNNError) as raised:
        corpora.fetch(name, warn=lambda message: None)
    message = str(raised.value)
    assert str(catalogue_file) in message and json.dumps(name) in message and "\n" not in message
    assert member is None or '"member"' in message
    written = [path for path in tmp_path.rglob("*") if path.is_file() and not path.is_relative_to(cache_dir)]
    assert sorted(written) == sorted([catalogue_file, source])


def test_a_link_planted_in_the_cache_does_not_lead_a_download_out(catalogue, tmp_path):
    catalogue()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    (writes.user_cache_dir() / "corpora").mkdir(parents=True)
    corpora.corpus_dir("tiny").symlink_to(elsewhere)
    with pytest.raises(CharRNNError, match="outside the corpus cache"):
        corpora.fetch("tiny")
    assert not any(elsewhere.iterdir()) and mode(elsewhere) == 0o755


# --- Reading stops at the declared size; https stays https ---------------------------------------------------------

ENDLESS_BLOCKS = 256  # 16 MB: "endless" enough to show a client that reads on, little enough to fail quickly


class Mirror(http.server.BaseHTTPRequestHandler):
    """/text: the tiny corpus; /endless: bytes until the client hangs up; /moved: a redirect to /text."""

    def do_GET(self):
        self.server.paths.append(self.path)
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/text")
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()
        blocks = [TEXT.encode()] if self.path == "/text" else itertools.repeat(b"x" * 65536, ENDLESS_BLOCKS)
        try:
            for block in blocks:
                self.wfile.write(block)
        except OSError:
            pass  # the client hung up, as a size limit makes it do

    def log_message(self, format, *args):
        pass  # no request log in the test output


@pytest.fixture
def server(monkeypatch):
    """A local http mirror on 127.0.0.1, in a thread; `.paths` lists what was asked of it."""
    monkeypatch.setenv("no_proxy", "*")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mirror)
    httpd.paths = []
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    httpd.url = lambda path: f"http://127.0.0.1:{httpd.server_port}{path}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("declared", [1000, None], ids=["declared size", "no declared size"])
def test_a_download_stops_at_the_declared_size(catalogue, server, monkeypatch, declared):
    monkeypatch.setattr(corpora, "UNDECLARED_LIMIT", 5000, raising=False)
    catalogue(url=server.url("/endless"), bytes=declared, sha256=None, unverified="a test")
    seen = []
    with pytest.raises(CharRNNError, match="sent more than"):
        corpora.fetch("tiny", progress=lambda done, total: seen.append(done))
    assert max(seen, default=0) <= (declared or 5000)  # before: it read on to 16 MB
    assert not any(corpora.corpus_dir("tiny").iterdir())


def test_a_zip_bomb_is_refused_before_it_inflates(tmp_path, monkeypatch):
    archive = zipped(tmp_path / "bomb.zip", "tiny", bytes(3 << 20))  # 3 MB of zeros pack into 3 KB
    entry = plain_entry(archive, sha256=None, unverified="a test", archive="zip", member="tiny")
    monkeypatch.setenv("CHARRNN_CATALOGUE", str(mirror(tmp_path, {"tiny": entry})))
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(CharRNNError, match="zip bomb"):
        corpora.fetch("tiny", warn=lambda message: None)
    assert [path.name for path in corpora.corpus_dir("tiny").iterdir()] == ["tiny.zip"]  # nothing inflated


def test_an_https_source_is_never_followed_to_http(catalogue, server, monkeypatch):
    class FakeTLS(urllib.request.BaseHandler):
        """Answers https with no certificate needed: every request is redirected to the local http mirror."""

        def https_open(self, request):
            headers = email.message.Message()
            headers["Location"] = server.url("/text")
            response = urllib.response.addinfourl(io.BytesIO(), headers, request.full_url, code=302)
            response.msg = "Found"
            return response

    monkeypatch.setattr(urllib.request, "HTTPSHandler", FakeTLS)  # what build_opener installs for https
    monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen's shared opener, rebuilt with it
    catalogue(url="https://mirror.invalid/tiny.txt")
    with pytest.raises(CharRNNError, match="not https"):
        corpora.fetch("tiny")
    assert server.paths == []


def test_a_redirect_that_keeps_the_scheme_is_followed(catalogue, server):
    catalogue(url=server.url("/moved"))
    assert corpora.fetch("tiny").read_text("utf-8") == TEXT
    assert server.paths == ["/moved", "/text"]


# --- Warnings are not progress; a malformed catalogue is one line -------------------------------------------------

def test_the_unverified_warning_shows_even_when_quiet(catalogue, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    catalogue(sha256=None, unverified="no published hash")
    corpora.fetch_shown(["tiny"], quiet=True)
    stderr = capsys.readouterr().err
    assert "warning: corpus 'tiny'" in stderr and "cannot be verified" in stderr and "downloading" not in stderr


def catalogue_text(drop: str = "", **changes) -> str:
    entry = {"url": "https://example.invalid/tiny.txt", "bytes": 10, "sha256": None, "unverified": "a test",
             "license": "none", "description": "a test", **changes}
    return json.dumps({"tiny": {key: value for key, value in entry.items() if key != drop}})


MALFORMED = [
    pytest.param("{", id="not JSON"),
    pytest.param("[]", id="a list"),
    pytest.param('{"tiny": []}', id="an entry that is not an object"),
    pytest.param(catalogue_text(bytes="many"), id="a size that is a string"),
    pytest.param(catalogue_text(bytes=True), id="a size that is true"),
    pytest.param(catalogue_text(bytes=-1), id="a negative size"),
    pytest.param(catalogue_text(mirror="x"), id="an unknown field"),
    pytest.param(catalogue_text(drop="url"), id="a missing field"),
    pytest.param(catalogue_text(sha256="abc"), id="a hash that is not hex"),
    pytest.param(catalogue_text(archive="rar", member="x"), id="an unknown archive"),
    pytest.param(catalogue_text(url="ftp://example.invalid/x"), id="an ftp url"),
]


@pytest.mark.parametrize("text", MALFORMED)
def test_a_malformed_catalogue_is_one_clear_line(tmp_path, monkeypatch, text):
    path = tmp_path / "catalogue.json"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("CHARRNN_CATALOGUE", str(path))
    with pytest.raises(CharRNNError) as raised:
        corpora.load_catalogue()
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and "unset CHARRNN_CATALOGUE" in message and "\n" not in message


@pytest.mark.parametrize("text", [catalogue_text(bytes="many"), "[]"], ids=["a size that is a string", "a list"])
@pytest.mark.parametrize("command", [["corpus", "list"], ["train", "tiny", "--steps", "1"]], ids=" ".join)
def test_the_cli_says_a_malformed_catalogue_in_one_line(tmp_path, monkeypatch, capsys, text, command):
    # In process (main() as the console script calls it): a subprocess would cost 2 s per case.
    path = tmp_path / "catalogue.json"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("CHARRNN_CATALOGUE", str(path))
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["charrnn", *command])
    with pytest.raises(SystemExit) as exited:
        run(cli.app)
    stderr = capsys.readouterr().err
    assert exited.value.code == 1 and stderr.startswith(f"charrnn: error: {path}: ") and stderr.count("\n") == 1
