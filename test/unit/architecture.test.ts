import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const ENGINE_DIRS = [
  'src/formats',
  'src/discovery',
  'src/analysis',
  'src/compute',
  'src/linalg',
  'src/report',
  'src/engine',
  'src/protocol',
  'src/examples',
  'src/transform',
  'src/ui-model',
  'src/cluster',
  'src/core',
];

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
        if (/^\s*(?:timeout \d+ )?(?:sudo )?apt-get\b.*\b(?:install|update)\b/.test(code) && !/DPkg::Lock::Timeout=\d+/.test(code))
          offenders.push(`${dir}/${e}:${i + 1}`);
      });
    }
  }
  assert.deepEqual(offenders, []);
});

/** Relative imports of a source file that exist at run time: static, re-exports and dynamic, type-only ones aside. */
function runtimeImports(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const specs: string[] = [];
  for (const m of code.matchAll(/^\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"](\.[^'"]+)['"]/gm)) if (!m[1]) specs.push(m[2]);
  for (const m of code.matchAll(/\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g)) specs.push(m[1]);
  return specs;
}

/** Strongly connected components with more than one file (or a file importing itself): the import cycles. */
export function importCycles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

test('no import cycle in src/ or webview/ (type-only imports aside; dynamic imports count)', async () => {
  const files = [...(await tsFiles(path.join(ROOT, 'src'))), ...(await tsFiles(path.join(ROOT, 'webview')))];
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const targets: string[] = [];
    for (const spec of runtimeImports(await fsp.readFile(f, 'utf8'))) {
      const p = path.resolve(path.dirname(f), spec);
      const hit = [`${p}.ts`, path.join(p, 'index.ts')].find((c) => known.has(c));
      if (hit) targets.push(path.relative(ROOT, hit));
    }
    graph.set(path.relative(ROOT, f), targets);
  }
  assert.ok(graph.size > 50, 'the sources were found');
  assert.deepEqual(importCycles(graph), []);
});

test('no two folders of src/ import each other at run time: the layers stay layers', async () => {
  const files = await tsFiles(path.join(ROOT, 'src'));
  const folderOf = (f: string): string => path.relative(path.join(ROOT, 'src'), f).split(path.sep)[0];
  const edges = new Map<string, Set<string>>();
  const via = new Map<string, string>();
  for (const f of files) {
    const from = folderOf(f);
    for (const spec of runtimeImports(await fsp.readFile(f, 'utf8'))) {
      const to = folderOf(path.resolve(path.dirname(f), spec));
      if (to === from || to.startsWith('..')) continue;
      if (!edges.has(from)) edges.set(from, new Set());
      edges.get(from)!.add(to);
      via.set(`${from}>${to}`, path.relative(ROOT, f));
    }
  }
  const mutual: string[] = [];
  for (const [a, tos] of edges)
    for (const b of tos) if (a < b && edges.get(b)?.has(a)) mutual.push(`${a} <-> ${b} (${via.get(`${a}>${b}`)}, ${via.get(`${b}>${a}`)})`);
  assert.deepEqual(mutual, []);
});

test('the cycle finder finds a cycle, a self-import and a dynamic import back, and no false one', () => {
  const g = (edges: Record<string, string[]>): Map<string, string[]> => new Map(Object.entries(edges));
  assert.deepEqual(importCycles(g({ a: ['b'], b: ['c'], c: ['a'], d: ['a'] })), [['a', 'b', 'c']]);
  assert.deepEqual(importCycles(g({ a: ['a'] })), [['a']]);
  assert.deepEqual(importCycles(g({ a: ['b'], b: [], c: ['a', 'b'] })), []);
  assert.deepEqual(
    runtimeImports(
      "import type { A } from './a';\nimport { b } from './b';\nexport * from './c';\nexport type { D } from './d';\nconst e = await import('./e');\nimport './f';",
    ),
    ['./b', './c', './f', './e'],
  );
});
