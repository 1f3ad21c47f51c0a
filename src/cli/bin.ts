#!/usr/bin/env node
/**
 * The bin's entry (bundled into dist/bin/kiln.js). `kiln --version` answers from here, before
 * commander or any command loads; every other run loads the CLI (main.ts).
 */
import { VERSION } from './version.js';

const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) process.stdout.write(`${VERSION}\n`);
else
  import('./main.js').then(
    ({ runCli }) => runCli(argv),
    (err) => {
      process.stderr.write(`kiln: cannot load the CLI: ${String(err)}\n`);
      process.exitCode = 1;
    },
  );
