/**
 * Header parsing speed: the one-pass safetensors header parser against the reference composition
 * (generic strict JSON parser + checks, test/support/reference-header.ts) and against JSON.parse (no
 * duplicate-key check, no format checks: the platform's floor), on headers of 25 / 50 / 100 MB in the
 * shapes a large header can take (best of --repeat runs each). Prints a Markdown table of seconds, seconds per MB and ratios.
 *
 *   node dist/bench-header.js [--sizes 25,50,100] [--repeat 2]
 */
import { parseHeader } from '../src/formats/safetensors-header';
import { referenceParseHeader } from '../test/support/reference-header';

interface Shape {
  name: string;
  make(bytes: number): { text: string; data: number };
}

/** Tensor entries until the text reaches `bytes`; offsets tile the data section. */
function tensorEntries(bytes: number, nameOf: (k: number) => string, dtype: string, shape: string, tensorBytes: number): { text: string; data: number } {
  const parts: string[] = [];
  let size = 2;
  let off = 0;
  for (let k = 0; size < bytes; k++) {
    const e = `"${nameOf(k)}":{"dtype":"${dtype}","shape":${shape},"data_offsets":[${off},${off + tensorBytes}]}`;
    off += tensorBytes;
    parts.push(e);
    size += e.length + 1;
  }
  return { text: `{${parts.join(',')}}`, data: off };
}

const PAD = 'x'.repeat(180);

const SHAPES: Shape[] = [
  { name: 'tensor entries (short names)', make: (bytes) => tensorEntries(bytes, (k) => `model.layers.${k}.mlp.w`, 'BF16', '[2,2]', 8) },
  { name: 'tensor entries (200-char names)', make: (bytes) => tensorEntries(bytes, (k) => `model.layers.${k}.${PAD}.w`, 'F32', '[1]', 4) },
  {
    name: 'metadata, many small members',
    make(bytes) {
      const parts: string[] = [];
      let size = 0;
      for (let k = 0; size < bytes; k++) {
        const e = `"k${k}":"v${k}"`;
        parts.push(e);
        size += e.length + 1;
      }
      return { text: `{"__metadata__":{${parts.join(',')}},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, data: 4 };
    },
  },
  {
    name: 'metadata, one long escaped string',
    make(bytes) {
      const body = '\\u00e9\\n'.repeat(Math.floor(bytes / 8));
      return { text: `{"__metadata__":{"config":"${body}"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, data: 4 };
    },
  },
];

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

function best(repeat: number, f: () => void): number {
  let min = Infinity;
  for (let r = 0; r < repeat; r++) {
    const t = process.hrtime.bigint();
    f();
    min = Math.min(min, Number(process.hrtime.bigint() - t) / 1e9);
  }
  return min;
}

function main(): void {
  const sizes = arg('--sizes', '25,50,100').split(',').map(Number);
  const repeat = Number(arg('--repeat', '2'));
  console.log('| header | MB | Gatescope s (s/MB) | reference s | JSON.parse s | vs reference | vs JSON.parse |');
  console.log('|---|---|---|---|---|---|---|');
  for (const shape of SHAPES) {
    for (const mb of sizes) {
      const { text, data } = shape.make(mb * 1e6);
      const bytes = Buffer.from(text);
      const size = bytes.length / 1e6;
      // What opening a file costs: `__metadata__` is checked here but decoded only on first use (a JSON.parse
      // of its text, the last column's cost for that part), which no analysis needs.
      const ours = best(repeat, () => {
        if (parseHeader('bench', bytes, data).tensors.length === 0) throw new Error('no tensors');
      });
      const ref = best(repeat, () => referenceParseHeader('bench', bytes, data));
      const native = best(repeat, () => JSON.parse(new TextDecoder().decode(bytes)));
      console.log(
        `| ${shape.name} | ${size.toFixed(0)} | ${ours.toFixed(2)} (${(ours / size).toFixed(3)}) | ${ref.toFixed(2)} | ${native.toFixed(2)} | ${(ref / ours).toFixed(1)}x | ${(native / ours).toFixed(2)}x |`,
      );
    }
  }
}

main();
