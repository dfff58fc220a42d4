/**
 * The Gatescope webview entry: one bundle for the four panels. `body[data-panel]` says which one; the
 * host sends the data after the webview says it is ready (with its saved state, after a reload).
 */
import '@vscode-elements/elements/dist/vscode-button/index.js';
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';
import { post, savedState, onHostMessage } from './api';
import { showBusy, initDashboard, showDashboard } from './dashboard';
import { showLayer } from './layer';
import { initCompare, showCompare } from './compare';
import { initSteps, showSteps } from './steps';
import { destroyCharts } from './charts';
import { clear, h } from './dom';

const app = document.getElementById('app') as HTMLElement;
const kind = document.body.dataset.panel;
const state = savedState();

if (state?.panel === 'dashboard') initDashboard(state.metric);
if (state?.panel === 'compare') initCompare(state.module);
if (state?.panel === 'steps') initSteps(state.grid);
let wantedTensor: string | null = state?.panel === 'layer' ? state.tensor : null;

onHostMessage((m) => {
  switch (m.type) {
    case 'dashboard':
      if (kind === 'dashboard') showDashboard(app, m.data);
      return;
    case 'layer':
      if (kind === 'layer') {
        const wanted = m.data.focus ?? wantedTensor;
        wantedTensor = null;
        showLayer(app, m.data, wanted);
      }
      return;
    case 'compare':
      if (kind === 'compare') showCompare(app, m.data);
      return;
    case 'steps':
      if (kind === 'steps') showSteps(app, m.data);
      return;
    case 'busy':
      showBusy(m.text);
      return;
    case 'error':
      destroyCharts();
      clear(app);
      app.append(h('p', { class: 'message' }, m.message));
      return;
  }
});

post({ type: 'ready', state: state && state.panel === kind ? state : null });
