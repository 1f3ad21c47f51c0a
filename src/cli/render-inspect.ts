import type { InspectResult } from '../api/image.js';
import { formatPlatform } from '../api/oci.js';
import { humanSize } from './output.js';

export function renderInspect(r: InspectResult): string {
  const lines = [
    `${r.name}`,
    `  digest     ${r.digest}`,
    `  mediaType  ${r.mediaType}`,
    `  size       ${r.size}`,
  ];
  if (r.synthesized)
    lines.push('  note       manifest synthesised from a Docker archive (no OCI index in the archive)');
  if (r.manifests) {
    lines.push(`  manifests  ${r.manifests.length}`);
    for (const m of r.manifests)
      lines.push(
        `    ${(m.platform ? formatPlatform(m.platform) : 'unknown').padEnd(16)} ${m.digest}  ${humanSize(m.size)}`,
      );
  }
  const img = r.image;
  if (img) {
    if (r.manifests) lines.push(`  selected   ${img.digest}`);
    lines.push(`  platform   ${formatPlatform(img.platform)}`);
    if (img.created) lines.push(`  created    ${img.created}`);
    lines.push(`  config     ${img.config.digest} (${img.config.mediaType})`);
    if (img.config.entrypoint) lines.push(`  entrypoint ${JSON.stringify(img.config.entrypoint)}`);
    if (img.config.cmd) lines.push(`  cmd        ${JSON.stringify(img.config.cmd)}`);
    for (const e of img.config.env ?? []) lines.push(`  env        ${e}`);
    for (const [k, v] of Object.entries(img.config.labels ?? {})) lines.push(`  label      ${k}=${v}`);
    for (const [k, v] of Object.entries(img.annotations ?? {})) lines.push(`  annotation ${k}=${v}`);
    // The layers' own sum: totalSize also counts the manifest and the config.
    const layerBytes = img.layers.reduce((n, l) => n + l.size, 0);
    lines.push(`  layers     ${img.layers.length} (${humanSize(layerBytes)} in all)`);
    for (const l of img.layers)
      lines.push(`    ${l.digest}  ${humanSize(l.size).padStart(9)}  ${l.mediaType}`);
  }
  return lines.join('\n');
}
