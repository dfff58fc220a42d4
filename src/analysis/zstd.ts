/**
 * zstd for the xorZstd payload of the step-to-step pass: one implementation (zstd compiled to WebAssembly,
 * the `@bokuweb/zstd-wasm` package) everywhere, so the bytes a report counts do not depend on the Node
 * version that ran it. Loaded on first use; the bundles carry `zstd.wasm` beside them.
 */
type ZstdModule = typeof import('@bokuweb/zstd-wasm');

let loading: Promise<ZstdModule> | undefined;

export function loadZstd(): Promise<ZstdModule> {
  loading ??= (async () => {
    const z = await import('@bokuweb/zstd-wasm');
    await z.init();
    return z;
  })();
  return loading;
}

/** zstd's default level: what a sender that sets nothing gets. */
export const ZSTD_LEVEL = 3;
