/** The webview's side of the protocol: a typed post, the saved panel state, validated inbound messages. */
import { parseHostMessage, parsePanelState, type HostToWebview, type PanelState, type WebviewToHost } from '../src/protocol/messages';

interface VsCodeApi {
  postMessage(message: unknown): void;
  getState(): unknown;
  setState(state: unknown): void;
}

declare function acquireVsCodeApi(): VsCodeApi;

const api: VsCodeApi = acquireVsCodeApi();

export function post(m: WebviewToHost): void {
  api.postMessage(m);
}

export function savedState(): PanelState | null {
  const s = api.getState() as { panelState?: unknown } | null | undefined;
  return parsePanelState(s?.panelState);
}

/** Saves the panel state for reloads (the serializer reads `panelState`) and tells the host. */
export function saveState(state: PanelState): void {
  api.setState({ panelState: state });
  post({ type: 'state', state });
}

export function onHostMessage(fn: (m: HostToWebview) => void): void {
  window.addEventListener('message', (e: MessageEvent) => {
    const m = parseHostMessage(e.data);
    if (m) fn(m); // anything unknown or malformed is dropped
  });
}
