"""A LiveKit webhook receiver for tests/livekit_webhooks.rs, written the way LiveKit's docs tell an
application to write one: every POST is checked with livekit-api's
`WebhookReceiver(TokenVerifier(key, secret)).receive(body, authorization_header)` (the JWT's
signature, issuer, nbf/exp, and its sha256 claim against the body), then parsed as a
`livekit.WebhookEvent`.

Usage: lk_webhook_receiver.py --key KEY --secret SECRET
Prints one JSON line `{"listening": PORT}` (127.0.0.1, an ephemeral port), then one JSON line per
request: {"ok", "content_type", "authorization", "body", "event" (the parsed WebhookEvent as proto3
JSON, ok only) or "error"}. Answers 200 to a verified request, 401 otherwise. Runs until killed.
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf.json_format import MessageToDict
from livekit import api


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", required=True)
    ap.add_argument("--secret", required=True)
    args = ap.parse_args()
    receiver = api.WebhookReceiver(api.TokenVerifier(args.key, args.secret))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            auth = self.headers.get("Authorization") or ""
            rec = {
                "path": self.path,
                "content_type": self.headers.get("Content-Type") or "",
                "authorization": auth,
                "body": raw.decode("utf-8", "replace"),
            }
            try:
                event = receiver.receive(raw.decode("utf-8"), auth)
                rec["ok"] = True
                rec["event"] = MessageToDict(event)
                status = 200
            except Exception as e:  # every failure is a rejection, recorded with its reason
                rec["ok"] = False
                rec["error"] = f"{type(e).__name__}: {e}"
                status = 401
            print(json.dumps(rec), flush=True)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            # Requests are reported on stdout as JSON; keep stderr for errors.
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    print(json.dumps({"listening": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
