/**
 * The part of the WebAssembly JS API the Node code uses (src/analysis/bf16-kernel.ts). TypeScript declares
 * WebAssembly only in the DOM library, which the Node code does not take (tsconfig.json; the webview has its
 * own, webview/tsconfig.json); Node has had these globals since v8.
 */
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  interface MemoryDescriptor {
    initial: number;
    maximum?: number;
    shared?: boolean;
  }
  class Memory {
    constructor(descriptor: MemoryDescriptor);
    readonly buffer: ArrayBuffer;
    grow(delta: number): number;
  }
  type ImportValue = Memory | ((...args: never[]) => unknown) | number;
  type Imports = Record<string, Record<string, ImportValue>>;
  type ExportValue = Memory | ((...args: never[]) => unknown) | { value: unknown };
  class Instance {
    constructor(module: Module, imports?: Imports);
    readonly exports: Record<string, ExportValue>;
  }
}
