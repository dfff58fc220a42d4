// Bundles the host tests with esbuild into out/host-test/:
//   expect.js        computes the expectations with the CLI (runs on the project's Node.js)
//   suite/index.js   the mocha suite VS Code's extension host loads (extensionTestsPath)
// `vscode` is the host's own module; mocha stays a plain require from the checkout's node_modules.
const path = require('node:path');
const esbuild = require('esbuild');

const root = path.resolve(__dirname, '..', '..');
const out = path.join(root, 'out', 'host-test');

const common = { bundle: true, platform: 'node', target: 'node20', format: 'cjs', sourcemap: 'inline', logLevel: 'warning', absWorkingDir: root };

function build() {
  esbuild.buildSync({ ...common, entryPoints: ['test/host/expect.ts'], outfile: path.join(out, 'expect.js'), external: ['onnxruntime-node'] });
  esbuild.buildSync({ ...common, entryPoints: ['test/host/suite/index.ts'], outfile: path.join(out, 'suite', 'index.js'), external: ['vscode', 'mocha'] });
  return { expect: path.join(out, 'expect.js'), suite: path.join(out, 'suite', 'index.js') };
}

module.exports = { build };

if (require.main === module) build();
