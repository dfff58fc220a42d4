import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseHostMessage, parsePanelState, parseWebviewMessage } from '../../src/protocol/messages';

test('webview messages: known shapes pass, fresh copies without extra fields', () => {
  assert.deepEqual(parseWebviewMessage({ type: 'selectCheckpoint', checkpoint: '/r/checkpoint-1', extra: '<script>' }), {
    type: 'selectCheckpoint',
    checkpoint: '/r/checkpoint-1',
  });
  assert.deepEqual(parseWebviewMessage({ type: 'openLayer', checkpoint: '/c', layer: 3 }), { type: 'openLayer', checkpoint: '/c', layer: 3, tensor: null });
  assert.deepEqual(parseWebviewMessage({ type: 'openLayer', checkpoint: '/c', layer: 3, tensor: 'model.layers.3.mlp.up_proj.weight' }), {
    type: 'openLayer',
    checkpoint: '/c',
    layer: 3,
    tensor: 'model.layers.3.mlp.up_proj.weight',
  });
  assert.deepEqual(parseWebviewMessage({ type: 'export', format: 'md' }), { type: 'export', format: 'md' });
  assert.deepEqual(parseWebviewMessage({ type: 'export', format: 'html' }), { type: 'export', format: 'html' });
  assert.deepEqual(parseWebviewMessage({ type: 'compareRuns' }), { type: 'compareRuns' });
  assert.deepEqual(parseWebviewMessage({ type: 'ready' }), { type: 'ready', state: null });
  assert.deepEqual(parseWebviewMessage({ type: 'ready', state: { panel: 'dashboard', runId: '/r', checkpoint: null, metric: 'nss' } }), {
    type: 'ready',
    state: { panel: 'dashboard', runId: '/r', checkpoint: null, metric: 'nss' },
  });
});

test('webview messages: unknown or malformed ones are dropped', () => {
  for (const bad of [
    null,
    undefined,
    42,
    'ready',
    [],
    {},
    { type: 'nope' },
    { type: '__proto__' },
    { type: 'selectCheckpoint' },
    { type: 'selectCheckpoint', checkpoint: 7 },
    { type: 'selectCheckpoint', checkpoint: '' },
    { type: 'selectCheckpoint', checkpoint: 'x'.repeat(5000) },
    { type: 'openLayer', checkpoint: '/c', layer: -1 },
    { type: 'openLayer', checkpoint: '/c', layer: 1.5 },
    { type: 'openLayer', checkpoint: '/c', layer: '2' },
    { type: 'openLayer', checkpoint: '/c', layer: 1, tensor: 5 },
    { type: 'export', format: 'pdf' },
    { type: 'state', state: { panel: 'evil' } },
    { type: 'openDashboard' },
    { type: 'analyze', checkpoint: null },
  ]) {
    assert.equal(parseWebviewMessage(bad), null, JSON.stringify(bad));
  }
});

test('panel state: validated, defaults filled, other panels rejected', () => {
  assert.deepEqual(parsePanelState({ panel: 'dashboard', runId: '/r', checkpoint: '/r/c', metric: 'bogus' }), {
    panel: 'dashboard',
    runId: '/r',
    checkpoint: '/r/c',
    metric: 'unchanged',
  });
  assert.deepEqual(parsePanelState({ panel: 'layer', runId: '/r', checkpoint: '/r/c', layer: 2, tensor: null }), {
    panel: 'layer',
    runId: '/r',
    checkpoint: '/r/c',
    layer: 2,
    tensor: null,
  });
  assert.deepEqual(parsePanelState({ panel: 'compare', base: '/b', module: 'q' }), { panel: 'compare', base: '/b', module: 'q' });
  assert.deepEqual(parsePanelState({ panel: 'compare', base: '/b', module: 'zz' }), { panel: 'compare', base: '/b', module: 'all' });
  assert.equal(parsePanelState({ panel: 'layer', runId: '/r', checkpoint: '/r/c', layer: 'x', tensor: null }), null);
  assert.equal(parsePanelState({ panel: 'dashboard', checkpoint: null }), null);
  assert.equal(parsePanelState(undefined), null);
});

test('host messages: the webview drops anything it does not know', () => {
  assert.equal(parseHostMessage({ type: 'html', html: '<img onerror=alert(1)>' }), null);
  assert.equal(parseHostMessage({ type: 'dashboard', data: { runId: '/r', runName: 'r', checkpoints: [], series: [], report: { kind: 'other' } } }), null);
  assert.ok(parseHostMessage({ type: 'dashboard', data: { runId: '/r', runName: 'r', checkpoints: [], series: [], report: null } }));
  assert.deepEqual(parseHostMessage({ type: 'busy', text: null }), { type: 'busy', text: null });
  assert.equal(parseHostMessage({ type: 'busy', text: 3 }), null);
  assert.equal(parseHostMessage({ type: 'compare', data: { base: '/b', report: { kind: 'gatescope.checkpoint-report' } } }), null);
});
