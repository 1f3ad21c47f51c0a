/** The integration tests' guard against a dist/ older than src/ (test/support/kiln.ts). */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { checkBuilt } from '../support/kiln.js';

it('a bundle older than a source file is refused, a newer one accepted, a missing one refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-stale-'));
  const src = join(dir, 'src');
  mkdirSync(join(src, 'image'), { recursive: true });
  const cli = join(dir, 'kiln.js');
  writeFileSync(cli, '');
  writeFileSync(join(src, 'image', 'a.ts'), '');
  utimesSync(cli, 1000, 1000);
  utimesSync(join(src, 'image', 'a.ts'), 2000, 2000);
  assert.throws(() => checkBuilt(cli, src), /older than src/);
  utimesSync(cli, 3000, 3000);
  checkBuilt(cli, src);
  assert.throws(() => checkBuilt(join(dir, 'missing.js'), src), /not found/);
});
