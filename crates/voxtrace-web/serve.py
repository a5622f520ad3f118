#!/usr/bin/env python3
"""Static server for the browser build (`just web`, `just test-web`), bound to 127.0.0.1.

Serves mounts, each a folder given on the command line as URL_PREFIX=FOLDER (e.g.
`/pkg/=target/web/pkg`); a request path maps to a file under its mount's folder and is refused
(404) when it would leave it (`..`, symlinks out). `.wasm` goes out as application/wasm, so
`WebAssembly.instantiateStreaming` accepts it.

With `--results DIR` it also accepts what the test page sends back: `POST /result/NAME` stores
the body as DIR/NAME (NAME: letters, digits, `-`, `_`, `.`; at most 1 GiB), and `POST
/result/done` makes the server exit after answering. Standard library only.
"""

import argparse
import http.server
import os
import re
import sys

MAX_BODY = 1 << 30
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8023)
    ap.add_argument("--results", help="folder for POST /result/NAME bodies")
    ap.add_argument("mounts", nargs="+", metavar="PREFIX=FOLDER")
    args = ap.parse_args()
    mounts = []
    for m in args.mounts:
        prefix, _, folder = m.partition("=")
        if not prefix.startswith("/") or not prefix.endswith("/") or not folder:
            ap.error(f"mount {m!r}: expected /PREFIX/=FOLDER")
        if not os.path.isdir(folder):
            ap.error(f"mount {m!r}: {folder} is not a folder")
        mounts.append((prefix, os.path.realpath(folder)))
    # Longest prefix first, so /models/x/ wins over /.
    mounts.sort(key=lambda pm: -len(pm[0]))
    results = os.path.realpath(args.results) if args.results else None
    if results:
        os.makedirs(results, exist_ok=True)

    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {
            **http.server.SimpleHTTPRequestHandler.extensions_map,
            ".wasm": "application/wasm",
            ".js": "text/javascript",
            ".mjs": "text/javascript",
        }

        def resolve(self, path):
            """The file `path` names under its mount, or None (no mount, or it leaves it)."""
            from urllib.parse import unquote

            path = unquote(path.split("?", 1)[0].split("#", 1)[0])
            if "\0" in path:
                return None
            for prefix, root in mounts:
                if path.startswith(prefix) or path + "/" == prefix:
                    full = os.path.realpath(os.path.join(root, path[len(prefix):]))
                    if full == root or full.startswith(root + os.sep):
                        return full
                    return None
            return None

        def translate_path(self, path):
            return self.resolve(path)

        def send_head(self):
            if self.resolve(self.path) is None:
                self.send_error(404)
                return None
            return super().send_head()

        def end_headers(self):
            # Fresh files on every load while developing (the wasm is rebuilt in place).
            self.send_header("Cache-Control", "no-store")
            super().end_headers()

        def do_POST(self):
            m = re.match(r"^/result/([^/?#]+)$", self.path)
            if not results or not m or not NAME.match(m.group(1)):
                self.send_error(404)
                return
            name = m.group(1)
            try:
                n = int(self.headers.get("Content-Length", "-1"))
            except ValueError:
                n = -1
            if n < 0 or n > MAX_BODY:
                self.send_error(413 if n > MAX_BODY else 411)
                return
            body = self.rfile.read(n)
            if name != "done":
                tmp = os.path.join(results, f".{name}.part")
                with open(tmp, "wb") as f:
                    f.write(body)
                os.replace(tmp, os.path.join(results, name))
            self.send_response(204)
            self.end_headers()
            if name == "done":
                print("serve.py: test page done", file=sys.stderr, flush=True)
                import threading

                threading.Thread(target=self.server.shutdown, daemon=True).start()

        def log_message(self, fmt, *a):
            if os.environ.get("VOXTRACE_WEB_QUIET") != "1":
                super().log_message(fmt, *a)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"serving on http://127.0.0.1:{httpd.server_address[1]}/", file=sys.stderr, flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
