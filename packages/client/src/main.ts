#!/usr/bin/env node
/** The `repoman` command. */
import { main } from './cli.ts';
import { commands } from './commands/index.ts';

process.exitCode = await main(process.argv.slice(2), commands, {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
});
