"""The WebShop server: the original's Flask routes over the 1k catalogue, served by waitress.

Routes (as princeton-nlp/WebShop `web_agent_site/app.py`):
  /<session_id>                                                   search page (POST search_query -> results)
  /search_results/<sid>/<keywords>/<page>                          10 results per page
  /item_page/<sid>/<asin>/<keywords>/<page>/<options>              product page with option radios
  /item_sub_page/<sid>/<asin>/<keywords>/<page>/<sub_page>/<options>  Description/Features/Reviews
  /done/<sid>/<asin>/<options>                                     purchase: reward page
plus /healthz. Bad input (unknown session/ASIN, malformed options or page) answers 4xx with a
one-line message where the original raised (500). Run: `sad-eval serve webshop`.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import ipaddress
import json
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any

from flask import Flask, Response, redirect, request
from werkzeug.exceptions import HTTPException, abort

from sad_eval.envs.webshop import pages
from sad_eval.envs.webshop.catalog import Catalog, load_catalog
from sad_eval.envs.webshop.goals import SESSION_RE, Goals, goal_index_for, load_goals
from sad_eval.envs.webshop.reward import get_reward, spacy_available
from sad_eval.envs.webshop.search import SearchEngine, page_of
from sad_eval.envs.webshop.sessions import Session, SessionStore
from sad_eval.envs.webshop.urls import BadLiteral, parse_keywords, parse_options

log = logging.getLogger("sad_eval.webshop")


class Shop:
    """Everything the routes read: catalogue, goals, search index, sessions."""

    def __init__(self, catalog: Catalog, goals: Goals, engine: SearchEngine, store: SessionStore,
                 show_attrs: bool = False):
        self.catalog, self.goals, self.engine, self.store = catalog, goals, engine, store
        self.show_attrs = show_attrs

    # ---- lookups that answer 4xx instead of raising
    def session(self, sid: str, create: bool = False) -> tuple[Session, dict[str, Any]]:
        if not SESSION_RE.fullmatch(sid):  # fullmatch: `$` would let `abc\n` through
            abort(400, f"bad session id {sid[:40]!r}: use 1-128 letters, digits, '_', '-', '.'")
        if create:
            try:
                s = self.store.open(sid)
            except ValueError as e:
                abort(400, str(e))
            except IndexError as e:
                abort(404, str(e))
        else:
            s = self.store.get(sid)
            if s is None:
                abort(404, f"unknown session {sid!r}: open /{sid} first "
                           f"(idle sessions expire after {self.store.ttl_s:.0f} s)")
        return s, self.goals.goals[s.goal_index]

    def product(self, asin: str) -> dict[str, Any]:
        p = self.catalog.get(asin)
        if p is None:
            abort(404, f"unknown product {asin[:20]!r}")
        return p

    def options(self, text: str, product: dict[str, Any]) -> dict[str, str]:
        try:
            opts = parse_options(text)
        except BadLiteral as e:
            abort(400, f"malformed options: {e}")
        out = {}
        for name, value in opts.items():
            values = product["options"].get(name.lower())
            if values is None or value.lower() not in values:
                abort(400, f"product {product['asin']} has no option {name!r}: {value!r}")
            out[name.lower()] = value.lower()
        return out


# request bodies: the only form field is a search query, so 64 KiB is ample; waitress refuses
# larger bodies before buffering them (a 100 MB POST used to cost 1.6 GB of memory)
MAX_BODY = 64 * 1024


def _page(text: str) -> int:
    # ASCII digits only: str.isdigit() also accepts `¹`, `²`, `①`, which int() rejects
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or not 1 <= int(text) <= 10_000:
        abort(400, f"bad page number {text[:20]!r}")
    return int(text)


def _keywords(text: str) -> list[str]:
    try:
        kws = parse_keywords(text)
    except BadLiteral as e:
        abort(400, f"malformed keywords: {e}")
    if not kws:
        abort(400, "empty search keywords")
    return kws


def create_app(shop: Shop) -> Flask:
    app = Flask("sad_eval.webshop")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["webshop"] = shop

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        return Response(f"{e.code} {e.name}: {e.description}\n", status=e.code, mimetype="text/plain")

    @app.get("/")
    def home():
        return redirect("/abc")  # the original's default session

    @app.get("/healthz")
    def healthz():
        return {"ok": True, "products": len(shop.catalog.products), "goals": len(shop.goals),
                "sessions": len(shop.store)}

    @app.route("/<session_id>", methods=["GET", "POST"])
    def index(session_id: str):
        _, goal = shop.session(session_id, create=True)
        if request.method == "POST" and "search_query" in request.form:
            words = request.form["search_query"].lower().split()
            if not words:
                abort(400, "empty search_query")
            # the original redirected with the keyword list's repr as the segment
            return redirect(pages.results_url(session_id, repr(words), 1))
        return pages.start_page(session_id, goal["instruction_text"])

    @app.route("/search_results/<session_id>/<path:keywords>/<page>", methods=["GET", "POST"])
    def search_results(session_id: str, keywords: str, page: str):
        _, goal = shop.session(session_id)
        n, kws = _page(page), _keywords(keywords)
        rng = random.Random(hashlib.sha256(session_id.encode()).digest())  # for `<r>` searches
        asins = shop.engine.search(kws, rng)
        products = [shop.catalog.by_asin[a] for a in page_of(asins, n)]
        return pages.results_page(session_id, goal["instruction_text"], keywords, " ".join(kws), n,
                                  len(asins), products)

    @app.route("/item_page/<session_id>/<asin>/<path:keywords>/<page>/<options>", methods=["GET", "POST"])
    def item_page(session_id: str, asin: str, keywords: str, page: str, options: str):
        _, goal = shop.session(session_id)
        n, kws, product = _page(page), _keywords(keywords), shop.product(asin)
        return pages.item_page(session_id, goal["instruction_text"], keywords, " ".join(kws), n, product,
                               shop.options(options, product), shop.show_attrs)

    @app.route("/item_sub_page/<session_id>/<asin>/<path:keywords>/<page>/<sub_page>/<options>",
               methods=["GET", "POST"])
    def item_sub_page(session_id: str, asin: str, keywords: str, page: str, sub_page: str, options: str):
        _, goal = shop.session(session_id)
        n, kws, product = _page(page), _keywords(keywords), shop.product(asin)
        if sub_page not in pages.SUB_PAGES:
            abort(404, f"no sub page {sub_page[:20]!r}; one of {', '.join(pages.SUB_PAGES)}")
        return pages.sub_page(session_id, goal["instruction_text"], keywords, " ".join(kws), n, product,
                              sub_page, shop.options(options, product))

    @app.route("/done/<session_id>/<asin>/<options>", methods=["GET", "POST"])
    def done(session_id: str, asin: str, options: str):
        sess, goal = shop.session(session_id)
        product = shop.product(asin)
        opts = shop.options(options, product)
        reward, info = get_reward(product, goal, shop.catalog.prices[product["asin"]], opts)
        sess.done, sess.reward = True, reward
        return pages.done_page(product, goal, opts, reward, info)

    return app


def build_shop(data_root: Path | None = None, max_sessions: int = 10_000, ttl_s: float = 3600.0,
               show_attrs: bool = False) -> Shop:
    catalog = load_catalog(data_root)
    goals = load_goals(data_root)
    store = SessionStore(lambda sid: goal_index_for(sid, goals), max_sessions, ttl_s)
    spacy_available()  # load the reward's tagger now (~1 s), not on the first purchase
    return Shop(catalog, goals, SearchEngine(catalog), store, show_attrs)


def create_wsgi_server(app, host: str = "127.0.0.1", port: int = 0, threads: int = 8):
    """The waitress server for the app: bounded bodies, enough connections; a port in use is one
    clear error."""
    from waitress import create_server

    # keep-alive clients (one per env) need more than waitress's default 100 connections
    try:
        return create_server(app, host=host, port=port, threads=threads, connection_limit=1000,
                             ident="sad-eval-webshop", max_request_body_size=MAX_BODY)
    except OSError as e:  # port in use, address not on this machine, no permission
        from sad_eval.errors import SadEvalError

        raise SadEvalError(f"cannot listen on {host}:{port}: {e.strerror or e}"
                           + (" (another server is there: choose another --port, or 0 for any free one)"
                              if e.errno == errno.EADDRINUSE else "")) from None


def serve(host: str = "127.0.0.1", port: int = 3000, data_root: Path | None = None, threads: int = 8,
          port_file: Path | None = None, max_sessions: int = 10_000, ttl_s: float = 3600.0,
          show_attrs: bool = False, echo=print) -> None:
    """Load everything, bind (port 0 = any free port), then serve until interrupted."""
    shop = build_shop(data_root, max_sessions, ttl_s, show_attrs)
    server = create_wsgi_server(create_app(shop), host, port, threads)
    url = f"http://{host}:{server.effective_port}"
    if not ipaddress.ip_address(host if host != "localhost" else "127.0.0.1").is_loopback:
        echo(f"warning: serving on non-loopback address {host}")
    if port_file:  # the env waits for this file: written only once the socket is bound
        tmp = Path(f"{port_file}.tmp")
        tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
        tmp.replace(port_file)
    echo(f"WebShop serving on {url} ({len(shop.catalog.products)} products, {len(shop.goals)} goals: "
         f"sessions fixed_0..fixed_{len(shop.goals) - 1})")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def _exit_with_parent(interval_s: float = 2.0) -> None:
    """Exit when the process that started us is gone (re-parented), so a killed env or test run
    never leaves a server behind."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sad_eval.envs.webshop.server", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3000, help="0 = any free port")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--port-file", type=Path, default=None, help="write {url, pid} here once listening")
    ap.add_argument("--max-sessions", type=int, default=10_000)
    ap.add_argument("--session-ttl", type=float, default=3600.0, help="idle seconds before a session expires")
    ap.add_argument("--attrs", action="store_true", help="show the Attributes tab on item pages")
    ap.add_argument("--exit-with-parent", action="store_true", help="exit when the parent process dies")
    a = ap.parse_args(argv)
    if a.exit_with_parent:
        _exit_with_parent()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    serve(a.host, a.port, a.data_root, a.threads, a.port_file, a.max_sessions, a.session_ttl, a.attrs,
          echo=lambda m: print(m, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
