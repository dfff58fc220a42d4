// Runs the same in-host mocha suite (test/host/suite/) in a desktop VS Code through @vscode/test-electron,
// for contributors who have one installed. It never downloads VS Code: point it at your executable.
//
//   npm run build && VSCODE_EXECUTABLE=/usr/share/code/code node test/host/run-electron.js
//   (macOS: VSCODE_EXECUTABLE="/Applications/Visual Studio Code.app/Contents/MacOS/Electron")
//
// `--prepare` does everything but start VS Code (bundles, synthetic run, expectations): the
// "Extension Tests" launch configuration (.vscode/launch.json) runs it first, then opens the suite.
//
// The extension is loaded from this checkout (extensionDevelopmentPath = the repository), not from a
// VSIX; scripts/host-test.sh is the CI path that tests the packaged extension in code-server.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.resolve(__dirname, '..', '..');

async function main() {
  const prepareOnly = process.argv.includes('--prepare');
  const exe = process.env.VSCODE_EXECUTABLE;
  if (!exe && !prepareOnly) {
    console.log('run-electron: set VSCODE_EXECUTABLE to a desktop VS Code executable to run the host suite in it (skipped).');
    return 0;
  }
  if (!prepareOnly && !fs.existsSync(exe)) throw new Error(`VSCODE_EXECUTABLE=${exe} does not exist`);
  if (!fs.existsSync(path.join(root, 'dist', 'extension.js'))) throw new Error('dist/extension.js is missing: run `npm run build` first');
  const bundles = require('./build').build();

  const examples = path.join(root, 'examples');
  if (!fs.existsSync(path.join(examples, 'synthetic', 'base', 'model.safetensors'))) {
    execFileSync(process.execPath, [path.join(root, 'dist', 'make-synthetic-run.js'), path.join(examples, 'synthetic')], { stdio: 'inherit' });
  }
  const config = path.join(examples, 'synthetic', 'train_grpo.py');
  fs.copyFileSync(path.join(__dirname, 'fixtures', 'train_grpo.py'), config);

  const artifacts = path.join(root, 'test-artifacts', 'host-electron');
  fs.rmSync(artifacts, { recursive: true, force: true });
  fs.mkdirSync(artifacts, { recursive: true });
  const expected = path.join(artifacts, 'expected.json');
  execFileSync(process.execPath, [bundles.expect, '--examples', examples, '--out', expected], { stdio: 'inherit' });
  if (prepareOnly) {
    console.log(`run-electron: prepared ${path.relative(root, bundles.suite)} and ${path.relative(root, expected)}`);
    return 0;
  }
  const { runTests } = require('@vscode/test-electron');

  // A throw-away profile: user settings as in the code-server run, no other extensions.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatescope-host-'));
  const userData = path.join(tmp, 'user-data');
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  const settings = { ...JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'settings.json'), 'utf8')), 'gatescope.autoAnalyze': false };
  fs.writeFileSync(path.join(userData, 'User', 'settings.json'), JSON.stringify(settings, null, 2));
  try {
    return await runTests({
      vscodeExecutablePath: exe,
      extensionDevelopmentPath: root,
      extensionTestsPath: bundles.suite,
      extensionTestsEnv: {
        GATESCOPE_HOST_TEST_EXPECTED: expected,
        GATESCOPE_HOST_TEST_OUT: artifacts,
        GATESCOPE_HOST_TEST_GREP: process.env.GATESCOPE_HOST_GREP ?? '',
      },
      launchArgs: [
        examples,
        '--disable-extensions',
        '--disable-workspace-trust',
        '--skip-welcome',
        '--skip-release-notes',
        `--user-data-dir=${userData}`,
        `--extensions-dir=${path.join(tmp, 'extensions')}`,
      ],
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    console.error(`run-electron: ${e && e.message ? e.message : e}`);
    process.exitCode = 1;
  },
);
