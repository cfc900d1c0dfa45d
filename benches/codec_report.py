#!/usr/bin/env python3
"""Prints the codec benchmark figures as a Markdown table.

Reads what `cargo bench --bench codec` left in target/criterion/<root>/<bench>/<case>/new/
(estimates.json, benchmark.json) and prints one row per message fixture: size, the median time of
the raw quick-xml tokenization (baseline), of read_any (parse+validate), their ratio against the
target of at most 2x, and the median time of write_envelope.

    python3 benches/codec_report.py [CRITERION_DIR] [--estimate median|mean] [--target 2.0]

CRITERION_DIR defaults to $CARGO_TARGET_DIR/criterion, else target/criterion next to this file's
crate. Exits 1 when some message is above the target, 2 when no figures are found. Stdlib only.
"""

import argparse
import json
import os
import sys
from pathlib import Path

BENCHES = ('baseline', 'parse', 'write')


def default_dir():
    target = os.environ.get('CARGO_TARGET_DIR')
    base = Path(target) if target else Path(__file__).resolve().parent.parent / 'target'
    return base / 'criterion'


def load(path, estimate):
    est = json.loads((path / 'new' / 'estimates.json').read_text())
    meta = json.loads((path / 'new' / 'benchmark.json').read_text())
    throughput = meta.get('throughput') or {}
    return est[estimate]['point_estimate'], throughput.get('Bytes')


def rows(root_dir, estimate):
    out = []
    for group in sorted(p for p in root_dir.iterdir() if p.is_dir() and p.name != 'report'):
        cases = sorted({c.name for b in BENCHES if (group / b).is_dir() for c in (group / b).iterdir()
                        if (c / 'new' / 'estimates.json').is_file()})
        for case in cases:
            figures, size = {}, None
            for bench in BENCHES:
                path = group / bench / case
                if (path / 'new' / 'estimates.json').is_file():
                    figures[bench], size = load(path, estimate)
            if 'baseline' in figures and 'parse' in figures:
                out.append((group.name, case, size, figures))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('dir', nargs='?', type=Path, default=default_dir())
    ap.add_argument('--estimate', choices=('median', 'mean'), default='median')
    ap.add_argument('--target', type=float, default=2.0, help='highest acceptable parse/baseline ratio')
    args = ap.parse_args()
    if not args.dir.is_dir():
        sys.exit(f'{args.dir}: no criterion output; run `cargo bench --bench codec` first')
    table = rows(args.dir, args.estimate)
    if not table:
        print(f'{args.dir}: no codec benchmark figures', file=sys.stderr)
        sys.exit(2)

    print(f'| message | bytes | baseline ns | parse+validate ns | ratio | write ns |')
    print('|---|---:|---:|---:|---:|---:|')
    over = []
    ratios = []
    for root, case, size, f in table:
        ratio = f['parse'] / f['baseline']
        ratios.append(ratio)
        flag = ''
        if ratio > args.target:
            over.append(f'{root} ({case})')
            flag = ' ⚠'
        write = f"{f['write']:,.0f}" if 'write' in f else '-'
        print(f"| {root} ({case}) | {size or '-'} | {f['baseline']:,.0f} | {f['parse']:,.0f} "
              f"| {ratio:.2f}×{flag} | {write} |")
    geo = 1.0
    for r in ratios:
        geo *= r
    geo **= 1 / len(ratios)
    print()
    print(f'{len(table)} fixtures, {args.estimate} estimates; parse/baseline ratio: min {min(ratios):.2f}×, '
          f'geometric mean {geo:.2f}×, max {max(ratios):.2f}×; target ≤ {args.target:g}×.')
    if over:
        print(f"Above target: {', '.join(over)}")
        sys.exit(1)


if __name__ == '__main__':
    main()
