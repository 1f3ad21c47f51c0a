// The kiln side of the layer benchmark, run by scripts/bench.ts as its own process. Plain JS over
// the built library (dist/), so its start-up is kiln's own and not a TypeScript loader's.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { collectEntries, OciLayout, writeLayer } from '../dist/index.js';

const args = process.argv.slice(2);
const compression = args[0]?.startsWith('--compression=')
  ? args.shift().slice('--compression='.length)
  : 'gzip';
const [layoutDir, base, ...paths] = args;
if (!layoutDir || !base || paths.length === 0) {
  console.error('usage: layer-child.mjs [--compression=gzip|zstd] LAYOUT BASE PATH...');
  process.exit(2);
}
const t0 = performance.now();
const entries = await collectEntries(
  paths.map((p) => ({ source: path.join(base, p), dest: p === '.' ? '' : p })),
);
const t1 = performance.now();
const store = await OciLayout.open(layoutDir, { create: true });
const layer = await writeLayer(store, entries, { compression });
const t2 = performance.now();
const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
process.stdout.write(
  `${JSON.stringify({
    digest: layer.descriptor.digest,
    size: layer.descriptor.size,
    diffId: layer.diffId,
    uncompressedSize: layer.uncompressedSize,
    entries: entries.length,
    collectMs: t1 - t0,
    writeMs: t2 - t1,
    maxRssKiB: process.resourceUsage().maxRSS,
    mainThreadCpuS: (Number(fields[11]) + Number(fields[12])) / 100,
  })}\n`,
);
