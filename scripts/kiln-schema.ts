/**
 * Writes schema/kiln.schema.json, the JSON Schema of kiln.yaml, from the zod schema in
 * src/project/project-schema.ts, for editor completion and checks:
 *
 *   node --import tsx scripts/kiln-schema.ts           writes the file
 *   node --import tsx scripts/kiln-schema.ts --check   exits 1 if the committed file is stale
 *
 * In an editor with the YAML language server, start kiln.yaml with
 *   # yaml-language-server: $schema=https://kiln.dev/schema/kiln.schema.json
 * A unit test (test/unit/project.test.ts) fails when the committed file is not what this writes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { projectSchema } from '../src/project/project-schema.js';

export const SCHEMA_ID = 'https://kiln.dev/schema/kiln.schema.json';
export const SCHEMA_FILE = fileURLToPath(new URL('../schema/kiln.schema.json', import.meta.url));

/** The schema file's exact text: 2-space JSON with a trailing newline. */
export function renderSchema(): string {
  // The input side: what a user writes (`to` as a string or a list), not the normalised result.
  // Draft-07 is the version editors' YAML and JSON language servers support best.
  const { $schema, ...rest } = z.toJSONSchema(projectSchema, { io: 'input', target: 'draft-07' });
  const schema = {
    $schema,
    $id: SCHEMA_ID,
    title: 'kiln.yaml',
    ...rest,
  };
  return `${JSON.stringify(schema, null, 2)}\n`;
}

const isMain =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (isMain) {
  const text = renderSchema();
  const rel = path.relative(process.cwd(), SCHEMA_FILE);
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(SCHEMA_FILE, 'utf8');
    } catch {}
    if (current !== text) {
      console.error(`${rel} is stale: run node --import tsx scripts/kiln-schema.ts`);
      process.exit(1);
    }
    console.log(`${rel} is up to date`);
  } else {
    writeFileSync(SCHEMA_FILE, text);
    console.log(`wrote ${rel}`);
  }
}
