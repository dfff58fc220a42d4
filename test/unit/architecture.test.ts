import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const ENGINE_DIRS = ['src/formats', 'src/discovery', 'src/analysis', 'src/compute', 'src/linalg', 'src/report', 'src/engine', 'src/protocol', 'src/examples', 'src/transform', 'src/ui-model', 'src/cluster'];

async function tsFiles(dir: string): Promise<string[]> {
  const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
  const out: string[] = [];
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await tsFiles(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

test('no engine file imports vscode: the CLI, the worker and plain tests share the code', async () => {
  const offenders: string[] = [];
  for (const d of ENGINE_DIRS) {
    for (const f of await tsFiles(path.join(ROOT, d))) {
      const text = await fsp.readFile(f, 'utf8');
      if (/from\s+['"]vscode['"]|require\(\s*['"]vscode['"]\s*\)/.test(text)) offenders.push(path.relative(ROOT, f));
    }
  }
  const cli = await fsp.readFile(path.join(ROOT, 'src', 'cli.ts'), 'utf8');
  if (/['"]vscode['"]/.test(cli)) offenders.push('src/cli.ts');
  assert.deepEqual(offenders, []);
});

test('nothing unpickles: no torch.load / pickle in the project sources', async () => {
  const offenders: string[] = [];
  for (const f of await tsFiles(path.join(ROOT, 'src'))) {
    const text = await fsp.readFile(f, 'utf8');
    if (/\bunpickle\(|pickle\.load|torch\.load\(/.test(text.replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, ''))) offenders.push(path.relative(ROOT, f));
  }
  assert.deepEqual(offenders, []);
});

test('every apt-get that installs or updates in the scripts waits for the dpkg lock instead of failing', async () => {
  const offenders: string[] = [];
  for (const dir of ['scripts', '.ci']) {
    const entries = await fsp.readdir(path.join(ROOT, dir)).catch(() => []);
    for (const e of entries) {
      const f = path.join(ROOT, dir, e);
      if (!(await fsp.stat(f)).isFile()) continue;
      const lines = (await fsp.readFile(f, 'utf8')).split('\n');
      lines.forEach((line, i) => {
        const code = line.replace(/#.*$/, '');
        // Commands that run apt, not messages that mention it.
        if (/^\s*(?:timeout \d+ )?(?:sudo )?apt-get\b.*\b(?:install|update)\b/.test(code) && !/DPkg::Lock::Timeout=\d+/.test(code)) offenders.push(`${dir}/${e}:${i + 1}`);
      });
    }
  }
  assert.deepEqual(offenders, []);
});
