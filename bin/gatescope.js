#!/usr/bin/env node
// Entry point of the `gatescope` CLI. The CLI is bundled to dist/cli.js by `npm run build`.
process.env.ORT_DISABLE_TELEMETRY = '1';
const path = require('node:path');
const fs = require('node:fs');
const bundle = path.join(__dirname, '..', 'dist', 'cli.js');
if (!fs.existsSync(bundle)) {
  console.error('gatescope: dist/cli.js is missing. Run `npm run build` in the Gatescope checkout first.');
  process.exit(2);
}
require(bundle)
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });
