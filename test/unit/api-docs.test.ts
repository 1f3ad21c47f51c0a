/**
 * The public API (src/api/*.ts, one module per subpath export) is documented: every name it exports
 * has a doc comment (`/** … *\/`) at its declaration, wherever that declaration lives.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));
const API = join(SRC, 'api');

/** Every export of src/api: `module: name`, whether it is documented, and where it is declared. */
function exportsOfApi(): { key: string; documented: boolean; where: string }[] {
  const roots = readdirSync(API)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(API, f));
  const program = ts.createProgram(roots, {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
  });
  const checker = program.getTypeChecker();
  const found: { key: string; documented: boolean; where: string }[] = [];
  for (const root of roots) {
    const file = program.getSourceFile(root);
    const symbol = file && checker.getSymbolAtLocation(file);
    assert.ok(symbol, `no module symbol for ${root}`);
    for (const exported of checker.getExportsOfModule(symbol)) {
      const target = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      const decls = target.getDeclarations() ?? [];
      const documented = decls.some((d) => ts.getJSDocCommentsAndTags(d).length > 0);
      const where = decls[0] ? relative(SRC, decls[0].getSourceFile().fileName) : '?';
      found.push({ key: `${relative(API, root)}: ${exported.name}`, documented, where });
    }
  }
  return found;
}

describe('public API', () => {
  const all = exportsOfApi();

  it('every export of src/api has a doc comment at its declaration', () => {
    assert.ok(all.length > 100, `only ${all.length} exports found: is the program reading src/api?`);
    const missing = all.filter((e) => !e.documented).map((e) => `${e.key} (${e.where})`);
    assert.deepEqual(missing, [], `exports without a doc comment:\n${missing.join('\n')}`);
  });
});
