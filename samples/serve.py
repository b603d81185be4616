#!/usr/bin/env python3
"""serve.py: a development server for samples/ (manual checks in a browser; the tests use their own
fake BBB server). It maps the URL layout of a BBB server onto this directory:

  /presentation/<id>/<file>            -> recordings/presentation/<id>/<file>
  /playback/video/<id>/[<file>]        -> recordings/video/<id>/<file> (index.html for the directory)
  /playback/presentation/2.3/<file>    -> player/2.3/<file> when that file exists,
  /playback/presentation/2.3/<other>   -> player/2.3/index.html (the player reads the id from the URL)
  /playback/presentation/2.0/<file>    -> player/2.0/<file>

with HEAD and single byte-range requests (Chromium needs ranges to seek in media files).

Usage: samples/serve.py [--port 8080] [--bind 127.0.0.1] [--recordings DIR]
  --recordings DIR serves DIR/presentation/... instead of samples/recordings (for `generate.sh long`).
"""
import argparse
import http.server
import os
import re
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))

TYPES = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'text/javascript; charset=utf-8',
    '.css': 'text/css; charset=utf-8',
    '.xml': 'application/xml',
    '.svg': 'image/svg+xml',
    '.png': 'image/png',
    '.webm': 'video/webm',
    '.mp4': 'video/mp4',
    '.m4v': 'video/mp4',
    '.ogg': 'audio/ogg',
    '.json': 'application/json',
}

SAFE = re.compile(r'^[A-Za-z0-9._-]+$')


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'  # keep-alive: media elements issue many range requests
    recordings = os.path.join(HERE, 'recordings')

    def resolve(self, path):
        parts = [p for p in path.split('/') if p]
        # Never let a URL segment walk out of the served directories.
        if any(not SAFE.match(p) or p in ('.', '..') for p in parts):
            return None
        if len(parts) >= 3 and parts[0] == 'presentation':
            return os.path.join(self.recordings, 'presentation', *parts[1:])
        if len(parts) >= 3 and parts[:2] == ['playback', 'video']:
            target = os.path.join(self.recordings, 'video', *parts[2:])
            if os.path.isdir(target):
                target = os.path.join(target, 'index.html')
            return target
        if len(parts) == 4 and parts[:3] == ['playback', 'presentation', '2.3']:
            f = os.path.join(HERE, 'player', '2.3', parts[3])
            return f if os.path.isfile(f) else os.path.join(HERE, 'player', '2.3', 'index.html')
        if len(parts) == 4 and parts[:3] == ['playback', 'presentation', '2.0']:
            return os.path.join(HERE, 'player', '2.0', parts[3])
        return None

    def do_GET(self):
        self.serve(body=True)

    def do_HEAD(self):
        self.serve(body=False)

    def serve(self, body):
        path = urllib.parse.urlsplit(self.path).path
        # /playback/video/<id> without the trailing slash: relative <source> URLs need it.
        m = re.match(r'^/playback/video/([^/]+)$', path)
        if m:
            self.send_response(301)
            self.send_header('Location', path + '/')
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        target = self.resolve(path)
        if target is None or not os.path.isfile(target):
            self.send_error(404)
            return
        size = os.path.getsize(target)
        start, end = 0, size - 1
        status = 200
        rng = self.headers.get('Range')
        if rng:
            m = re.match(r'^bytes=(\d*)-(\d*)$', rng.strip())
            if not m or (m.group(1) == '' and m.group(2) == ''):
                self.send_error(416)
                return
            if m.group(1) == '':
                start = max(0, size - int(m.group(2)))
            else:
                start = int(m.group(1))
                if m.group(2) != '':
                    end = min(end, int(m.group(2)))
            if start > end:
                self.send_response(416)
                self.send_header('Content-Range', 'bytes */%d' % size)
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header('Content-Type', TYPES.get(os.path.splitext(target)[1], 'application/octet-stream'))
        self.send_header('Accept-Ranges', 'bytes')
        self.send_header('Content-Length', str(end - start + 1))
        if status == 206:
            self.send_header('Content-Range', 'bytes %d-%d/%d' % (start, end, size))
        self.send_header('Cache-Control', 'no-cache')
        self.end_headers()
        if not body:
            return
        with open(target, 'rb') as f:
            f.seek(start)
            left = end - start + 1
            try:
                while left > 0:
                    chunk = f.read(min(65536, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser cancelled a media request; normal while seeking

    def log_message(self, fmt, *args):
        if os.environ.get('SERVE_LOG'):
            super().log_message(fmt, *args)


def main():
    ap = argparse.ArgumentParser(description='Serve samples/ with the URL layout of a BBB server.')
    ap.add_argument('--port', type=int, default=8080)
    ap.add_argument('--bind', default='127.0.0.1')
    ap.add_argument('--recordings', default=os.path.join(HERE, 'recordings'))
    args = ap.parse_args()
    Handler.recordings = os.path.abspath(args.recordings)
    server = http.server.ThreadingHTTPServer((args.bind, args.port), Handler)
    print('serving %s on http://%s:%d/' % (HERE, args.bind, args.port), flush=True)
    server.serve_forever()


if __name__ == '__main__':
    main()
