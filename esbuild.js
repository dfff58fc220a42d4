// Builds the four bundles of the design: the extension host, the engine worker, the CLI and the webview.
// onnxruntime-node stays external: it is a native module resolved from node_modules at run time.
const esbuild = require('esbuild');
const path = require('node:path');

const production = process.argv.includes('--production');
const watch = process.argv.includes('--watch');

const common = {
  bundle: true,
  minify: production,
  // Maps beside the bundles in both modes; .vscodeignore keeps them out of the VSIX.
  sourcemap: true,
  logLevel: 'warning',
};

const nodeBundles = [
  { entryPoints: ['src/extension.ts'], outfile: 'dist/extension.js', external: ['vscode', 'onnxruntime-node'] },
  { entryPoints: ['src/engine/worker.ts'], outfile: 'dist/worker.js', external: ['onnxruntime-node'] },
  { entryPoints: ['src/analysis/diff-thread.ts'], outfile: 'dist/diff-thread.js' },
  { entryPoints: ['src/analysis/steps-thread.ts'], outfile: 'dist/steps-thread.js' },
  { entryPoints: ['src/discovery/scan-thread.ts'], outfile: 'dist/scan-thread.js' },
  { entryPoints: ['src/cli.ts'], outfile: 'dist/cli.js', external: ['onnxruntime-node'] },
  { entryPoints: ['scripts/make-synthetic-run.ts'], outfile: 'dist/make-synthetic-run.js' },
  { entryPoints: ['scripts/bench.ts'], outfile: 'dist/bench.js', external: ['onnxruntime-node'] },
  { entryPoints: ['scripts/bench-header.ts'], outfile: 'dist/bench-header.js' },
  { entryPoints: ['scripts/bench-accuracy.ts'], outfile: 'dist/bench-accuracy.js', external: ['onnxruntime-node'] },
  { entryPoints: ['scripts/gpu-check.ts'], outfile: 'dist/gpu-check.js', external: ['onnxruntime-node'] },
].map((b) => ({ ...common, ...b, platform: 'node', target: 'node20', format: 'cjs' }));

const webviewBundles = [{ entryPoints: ['webview/main.ts'], outfile: 'dist/webview/main.js' }].map((b) => ({
  ...common,
  ...b,
  platform: 'browser',
  target: 'es2022',
  format: 'iife',
}));

async function main() {
  const fs = require('node:fs');
  const all = [...nodeBundles, ...webviewBundles].filter((b) => fs.existsSync(path.join(__dirname, b.entryPoints[0])));
  await buildKernels(fs);
  if (watch) {
    const contexts = await Promise.all(all.map((b) => esbuild.context(b)));
    copyAssets(fs);
    await Promise.all(contexts.map((c) => c.watch()));
    return;
  }
  await Promise.all(all.map((b) => esbuild.build(b)));
  copyAssets(fs);
}

// The WebAssembly SIMD kernels, compiled from kernels/ with AssemblyScript into dist/ (rebuilt when the
// source is newer than the module). The bundles load them from beside themselves.
const KERNELS = [['kernels/bf16-diff.ts', 'dist/bf16-diff.wasm']];

async function buildKernels(fs) {
  const { default: asc } = await import('assemblyscript/asc');
  for (const [source, out] of KERNELS) {
    const src = path.join(__dirname, source);
    const dst = path.join(__dirname, out);
    if (fs.existsSync(dst) && fs.statSync(dst).mtimeMs >= fs.statSync(src).mtimeMs) continue;
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    const { error, stderr } = await asc.main([src, '-O3', '--runtime', 'stub', '--importMemory', '--noAssert', '--enable', 'simd', '-o', dst]);
    if (error) throw new Error(`${source}: ${error.message}\n${stderr.toString()}`);
  }
}

// zstd (the step pass's XOR+zstd payload) is WebAssembly that its loader reads from beside the bundle.
function copyAssets(fs) {
  const wasm = path.join(path.dirname(require.resolve('@bokuweb/zstd-wasm')), 'zstd.wasm');
  fs.mkdirSync(path.join(__dirname, 'dist'), { recursive: true });
  fs.copyFileSync(wasm, path.join(__dirname, 'dist', 'zstd.wasm'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
