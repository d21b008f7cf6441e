"""WebShop-1k: a local reimplementation of the WebShop server (princeton-nlp/WebShop) and its client env.

Importing this package is cheap; the server (Flask, bm25s) loads only in `server.py`.
See docs/webshop.md for the deviations from the original.
"""
