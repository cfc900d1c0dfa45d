#!/usr/bin/env python3
"""Times two node binaries on hostile inputs, over HTTP, in the same run: how long each takes to
answer (or whether it dies), as a Markdown table.

    python3 benches/hostile_report.py --old OLD_BINARY [--new target/release/pagonode] [--runs 3]

Each binary runs `pagonode serve` with the example configuration on free loopback ports, its
own temporary database, 2 MiB bodies and no simulated EC (so a readable request ends with
PPT_STAZIONE_INT_PA_IRRAGGIUNGIBILE, at once). Every input is posted `--runs` times to each
binary, alternating; a binary that dies (a stack overflow aborts the process) is reported as
such and started again. The inputs are an activatePaymentNotice (examples/activate.xml) carrying
what made the earlier code crash or go quadratic: deep nesting in the SOAP Header and after the
Body, `Body` repeated in a comment with no SOAPAction (operation detection), `password` repeated
(journal masking, read and unread requests), many namespace declarations in scope, many
attributes in one tag. Then `pagonode validate` on a document nested 100,000 levels deep.
Stdlib only.
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACTIVATE = (ROOT / 'examples' / 'activate.xml').read_text()
KIB = 1024


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def in_header(doc, extra):
    return doc.replace('<soapenv:Body>', f'<soapenv:Header>{extra}</soapenv:Header><soapenv:Body>', 1)


def after_body(doc, extra):
    return doc.replace('</soapenv:Body>', f'</soapenv:Body>{extra}', 1)


def nested(depth):
    return "<h:x xmlns:h='urn:h'>" + '<a>' * depth + '</a>' * depth + '</h:x>'


def many(unit, size):
    return unit * (size // len(unit))


def inputs():
    """(name, SOAPAction or None, body)."""
    out = []
    for depth in (5_000, 100_000):
        out.append((f'{depth:,} levels in the Header', 'activatePaymentNotice', in_header(ACTIVATE, nested(depth))))
        out.append((f'{depth:,} levels after the Body', 'activatePaymentNotice', after_body(ACTIVATE, nested(depth))))
    for size in (64 * KIB, 256 * KIB, 1024 * KIB):
        label = f'{size // KIB} KiB'
        out.append((f'`Body` in a comment, no SOAPAction, {label}', None,
                    ACTIVATE.replace('<soapenv:Body>', f'<!-- {many("Body", size)} --><soapenv:Body>', 1)))
        out.append((f'`password` in a comment, {label}', 'activatePaymentNotice',
                    in_header(ACTIVATE, f'<!-- {many("password", size)} -->')))
        out.append((f'`<password` after the root (unreadable), {label}', 'activatePaymentNotice',
                    ACTIVATE + many('<password', size)))
    decls = ''.join(f" xmlns:p{i}='urn:p'" for i in range(KIB * KIB // 50))
    out.append(('20,000 namespace declarations, 130,000 elements', 'activatePaymentNotice',
                in_header(ACTIVATE.replace('<soapenv:Envelope ', f'<soapenv:Envelope{decls} ', 1),
                          "<h:x xmlns:h='urn:h'>" + '<a/>' * (KIB * KIB // 8) + '</h:x>')))
    attrs = ''.join(f" h:a{i}=''" for i in range(KIB * KIB // 16))
    out.append(('65,000 attributes in one tag', 'activatePaymentNotice',
                in_header(ACTIVATE, f"<h:x xmlns:h='urn:h'{attrs}/>")))
    return out


class Node:
    def __init__(self, binary, label, workdir):
        self.binary, self.label = binary, label
        self.dir = Path(tempfile.mkdtemp(prefix=f'hostile-{label}-', dir=workdir))
        self.proc = None
        self.deaths = 0

    def start(self):
        self.port = free_port()
        config = (ROOT / 'pagonode.example.toml').read_text()
        config = re.sub(r'(?m)^listen = "127.0.0.1:8080".*$', f'listen = "127.0.0.1:{self.port}"', config)
        config = re.sub(r'(?m)^admin_listen = .*$', '', config)
        config = re.sub(r'(?m)^max_xml_depth = .*$', '', config)  # the older binary has no such key
        config = re.sub(r'(?m)^database = .*$', f'database = "{self.dir / "node.db"}"', config)
        config = re.sub(r'(?m)^max_body_bytes = .*$', f'max_body_bytes = {2 * KIB * KIB}', config)
        path = self.dir / 'node.toml'
        path.write_text(config)
        self.proc = subprocess.Popen([self.binary, 'serve', '--config', str(path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, 'RUST_LOG': 'error'})
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f'{self.label}: the node did not start')

    def post(self, action, body, timeout):
        """Seconds to an answer, or None if the node died (it is started again)."""
        headers = {'Content-Type': 'text/xml; charset=utf-8'}
        if action:
            headers['SOAPAction'] = f'"{action}"'
        req = urllib.request.Request(f'http://127.0.0.1:{self.port}/', data=body.encode(), headers=headers)
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            e.read()
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as e:
            try:  # a dying process may still be writing its core when the connection drops
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            if self.proc.poll() is not None:
                self.deaths += 1
                self.start()
                return None
            if isinstance(e, (socket.timeout, TimeoutError)) or 'timed out' in str(e):
                return float('inf')
            raise
        return time.perf_counter() - started

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


def shown(times):
    if any(t is None for t in times):
        return 'dies'
    if any(t == float('inf') for t in times):
        return 'no answer'
    return f'{statistics.median(times) * 1000:,.1f} ms'


def validate(binary, doc_path):
    started = time.perf_counter()
    proc = subprocess.run([binary, 'validate', str(doc_path)], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode < 0 or proc.returncode > 1:
        return 'dies'
    return f'{elapsed * 1000:,.1f} ms ({"VALID" if proc.returncode == 0 else "INVALID"})'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--old', required=True, help='the binary before the change')
    ap.add_argument('--new', default=str(ROOT / 'target' / 'release' / 'pagonode'))
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--timeout', type=float, default=600, help='seconds to wait for one answer')
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        nodes = [Node(args.old, 'old', work), Node(args.new, 'new', work)]
        for n in nodes:
            n.start()
        print('| input | bytes | old | new |')
        print('|---|---:|---:|---:|')
        try:
            for name, action, body in inputs():
                times = {n.label: [] for n in nodes}
                for _ in range(args.runs):
                    for n in nodes:
                        times[n.label].append(n.post(action, body, args.timeout))
                print(f'| {name} | {len(body.encode()):,} | {shown(times["old"])} | {shown(times["new"])} |', flush=True)
        finally:
            for n in nodes:
                n.stop()
        deep = Path(work) / 'deep.xml'
        deep.write_text(in_header(ACTIVATE, nested(100_000)))
        print(f'| `pagonode validate`, 100,000 levels | {deep.stat().st_size:,} '
              f'| {validate(args.old, deep)} | {validate(args.new, deep)} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
