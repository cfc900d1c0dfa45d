#!/usr/bin/env python3
"""Prints the codec benchmark figures as a Markdown table.

Reads what `cargo bench --bench codec` left in target/criterion/<root>/<bench>/<case>/new/
(estimates.json, sample.json, benchmark.json) and prints one row per message fixture: size, the
time of the raw quick-xml tokenization (baseline), of read_any (parse+validate), their ratio
against the target of at most 2x, and the time of write_envelope. When the bench also left
codec-interleaved.tsv (baseline and read_any measured in alternating batches, fastest batch of
each), its ratio is a last column: the figure least disturbed by other load on the machine.

    python3 benches/codec_report.py [CRITERION_DIR] [--estimate median|mean|fastest] [--target 2.0]

`--estimate` picks criterion's median (default) or mean estimate, or `fastest`: the time per
iteration of the quickest of criterion's samples.

CRITERION_DIR defaults to $CRITERION_HOME, else $CARGO_TARGET_DIR/criterion, else target/criterion
next to this file's crate. Exits 1 when some fixture is above the target (by the interleaved ratio
when there is one, else by criterion's), 2 when no figures are found. Stdlib only.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

BENCHES = ('baseline', 'parse', 'write')
INTERLEAVED = 'codec-interleaved.tsv'


def default_dir():
    if os.environ.get('CRITERION_HOME'):
        return Path(os.environ['CRITERION_HOME'])
    target = os.environ.get('CARGO_TARGET_DIR')
    base = Path(target) if target else Path(__file__).resolve().parent.parent / 'target'
    return base / 'criterion'


def load(path, estimate):
    meta = json.loads((path / 'new' / 'benchmark.json').read_text())
    throughput = meta.get('throughput') or {}
    if estimate == 'fastest':
        sample = json.loads((path / 'new' / 'sample.json').read_text())
        value = min(t / n for t, n in zip(sample['times'], sample['iters']))
    else:
        value = json.loads((path / 'new' / 'estimates.json').read_text())[estimate]['point_estimate']
    return value, throughput.get('Bytes')


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


def interleaved(root_dir):
    """(root, case) -> parse/baseline ratio from the interleaved measurement, if any."""
    path = root_dir / INTERLEAVED
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        root, case, _size, base, parse = line.split('\t')
        out[(root, case)] = float(parse) / float(base)
    return out


def geomean(xs):
    return math.exp(sum(map(math.log, xs)) / len(xs))


def summary(name, ratios, target):
    return (f'{name}: min {min(ratios):.2f}×, geometric mean {geomean(ratios):.2f}×, '
            f'max {max(ratios):.2f}× (target ≤ {target:g}×)')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('dir', nargs='?', type=Path, default=default_dir())
    ap.add_argument('--estimate', choices=('median', 'mean', 'fastest'), default='median')
    ap.add_argument('--target', type=float, default=2.0, help='highest acceptable parse/baseline ratio')
    args = ap.parse_args()
    if not args.dir.is_dir():
        sys.exit(f'{args.dir}: no criterion output; run `cargo bench --bench codec` first')
    table = rows(args.dir, args.estimate)
    if not table:
        print(f'{args.dir}: no codec benchmark figures', file=sys.stderr)
        sys.exit(2)
    inter = interleaved(args.dir)

    head = '| message | bytes | baseline ns | parse+validate ns | ratio | write ns |'
    rule = '|---|---:|---:|---:|---:|---:|'
    if inter:
        head += ' ratio, interleaved |'
        rule += '---:|'
    print(head)
    print(rule)
    ratios, inter_ratios, over = [], [], []
    for root, case, size, f in table:
        ratio = f['parse'] / f['baseline']
        ratios.append(ratio)
        write = f"{f['write']:,.0f}" if 'write' in f else '-'
        line = (f"| {root} ({case}) | {size or '-'} | {f['baseline']:,.0f} | {f['parse']:,.0f} "
                f"| {ratio:.2f}×{' ⚠' if ratio > args.target else ''} | {write} |")
        verdict = ratio
        if inter:
            r = inter.get((root, case))
            if r is None:
                line += ' - |'
            else:
                inter_ratios.append(r)
                line += f" {r:.2f}×{' ⚠' if r > args.target else ''} |"
                verdict = r
        if verdict > args.target:
            over.append(f'{root} ({case})')
        print(line)
    print()
    print(f'{len(table)} fixtures. ' + summary(f'parse/baseline, criterion {args.estimate}', ratios, args.target))
    if inter_ratios:
        print(summary('parse/baseline, interleaved', inter_ratios, args.target))
    if over:
        print(f"Above target{' (interleaved)' if inter_ratios else ''}: {', '.join(over)}")
        sys.exit(1)


if __name__ == '__main__':
    main()
