/**
 * Compute backends (src/compute): the onnxruntime backend against the TypeScript reference, the ONNX
 * graphs we build, device selection and fallback.
 *
 * Float32 tolerance for products: |C - C_ref| <= 4 * k * eps32 * (|A| |B|)_ij, the classic bound for a
 * length-k float32 dot product (eps32 = 2^-24), with C_ref accumulated in float64; |A| |B| is the
 * product of the absolute values. In practice the observed error is far below the bound.
 */
process.env.ORT_DISABLE_TELEMETRY = '1';

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { onnx } from 'onnx-proto';
import type { ComputeBackend, Matrix, Matrix64 } from '../../src/compute/backend';
import { createBackend, createMatrix, matmulShape, matrixFromRows, transposeMatrix, widenMatrix } from '../../src/compute/backend';
import { GRAPH_KINDS, IR_VERSION, OPSET_VERSION, buildGraph } from '../../src/compute/onnx-graphs';
import { OrtBackend } from '../../src/compute/ort-backend';
import { ReferenceBackend } from '../../src/compute/reference-backend';
import { Rng } from '../../src/linalg/random';

const EPS32 = 2 ** -24;
const EPS64 = 2 ** -53;

function randomMatrix(rows: number, cols: number, seed: number): Matrix {
  const m = createMatrix(rows, cols);
  new Rng(seed).fillGaussian(m.data);
  return m;
}

function absMatrix(m: Matrix): Matrix {
  return { rows: m.rows, cols: m.cols, data: m.data.map(Math.abs) };
}

const ref = new ReferenceBackend();

/** Asserts C matches op(A) op(B) within the float32 dot-product bound. */
function assertProductClose(C: Matrix, a: Matrix, b: Matrix, opts: { transA?: boolean; transB?: boolean }, what: string): void {
  const exact = ref.matmulFloat64(a, b, opts);
  const bound = ref.matmulFloat64(absMatrix(a), absMatrix(b), opts);
  const k = matmulShape(a, b, opts).k;
  assert.equal(C.rows, exact.rows, `${what}: rows`);
  assert.equal(C.cols, exact.cols, `${what}: cols`);
  assert.equal(C.data.length, exact.data.length);
  for (let i = 0; i < C.data.length; i++) {
    const tol = 4 * k * EPS32 * bound.data[i] + 1e-30;
    const err = Math.abs(C.data[i] - exact.data[i]);
    if (!(err <= tol)) assert.fail(`${what}: entry ${i} off by ${err} (tol ${tol})`);
  }
}

/** A float64 matrix with entries that float32 cannot hold (a Gaussian plus a sub-float32 perturbation). */
function randomMatrix64(rows: number, cols: number, seed: number): Matrix64 {
  const m = widenMatrix(randomMatrix(rows, cols, seed));
  const rng = new Rng(seed + 7);
  for (let i = 0; i < m.data.length; i++) m.data[i] += 1e-9 * rng.nextGaussian();
  return m;
}

/** Asserts a float64 C matches op(A) op(B) within the float64 dot-product bound 4 k eps64 (|A| |B|)_ij. */
async function assertProduct64Close(C: Matrix64, a: Matrix64, b: Matrix64, opts: { transA?: boolean; transB?: boolean }, what: string): Promise<void> {
  const exact = await ref.matmul64(a, b, opts);
  const abs = (m: Matrix64): Matrix64 => ({ rows: m.rows, cols: m.cols, data: m.data.map(Math.abs) });
  const bound = await ref.matmul64(abs(a), abs(b), opts);
  const k = matmulShape(a, b, opts).k;
  assert.equal(C.rows, exact.rows, `${what}: rows`);
  assert.equal(C.cols, exact.cols, `${what}: cols`);
  assert.ok(C.data instanceof Float64Array, `${what}: float64 output`);
  for (let i = 0; i < C.data.length; i++) {
    const tol = 4 * k * EPS64 * bound.data[i] + 1e-300;
    const err = Math.abs(C.data[i] - exact.data[i]);
    if (!(err <= tol)) assert.fail(`${what}: entry ${i} off by ${err} (tol ${tol})`);
  }
}

describe('ONNX graphs', () => {
  it('the float64 graphs are the same Gemm with DOUBLE inputs and output', () => {
    for (const kind of GRAPH_KINDS) {
      const g = onnx.ModelProto.decode(buildGraph(kind, 'float64')).graph as onnx.GraphProto;
      assert.equal(g.node[0].opType, 'Gemm');
      for (const vi of [...g.input, ...g.output]) assert.equal(vi.type?.tensorType?.elemType, onnx.TensorProto.DataType.DOUBLE, `${kind} ${vi.name}`);
      const same = onnx.ModelProto.decode(buildGraph(kind)).graph as onnx.GraphProto;
      assert.deepEqual(
        (g.node[0].attribute ?? []).map((a) => [a.name, a.i, a.f]),
        (same.node[0].attribute ?? []).map((a) => [a.name, a.i, a.f]),
      );
    }
  });

  it('every kind encodes as a one-Gemm float32 model, opset 17, IR 8, symbolic dims', () => {
    for (const kind of GRAPH_KINDS) {
      const bytes = buildGraph(kind);
      const model = onnx.ModelProto.decode(bytes);
      assert.equal(Number(model.irVersion), IR_VERSION);
      assert.equal(Number(model.opsetImport[0].version), OPSET_VERSION);
      const g = model.graph as onnx.GraphProto;
      assert.equal(g.node.length, 1);
      assert.equal(g.node[0].opType, 'Gemm');
      for (const vi of [...g.input, ...g.output]) {
        assert.equal(vi.type?.tensorType?.elemType, onnx.TensorProto.DataType.FLOAT);
        for (const d of vi.type?.tensorType?.shape?.dim ?? []) assert.ok(d.dimParam && d.dimParam.length > 0, 'dim_param');
      }
      const attr = (name: string) => Number((g.node[0] as onnx.NodeProto).attribute.find((a) => a.name === name)?.i ?? 0);
      const wantA = kind === 'matmul_tn' || kind === 'matmul_tt' || kind === 'gram_AtA' ? 1 : 0;
      const wantB = kind === 'matmul_nt' || kind === 'matmul_tt' || kind === 'gram_AAt' ? 1 : 0;
      assert.equal(attr('transA'), wantA, `${kind} transA`);
      assert.equal(attr('transB'), wantB, `${kind} transB`);
    }
  });
});

describe('onnxruntime CPU backend vs reference', () => {
  let be: ComputeBackend;
  before(async () => {
    be = await createBackend({ device: 'cpu', threads: 1 });
  });
  after(async () => {
    await be.dispose();
  });

  it('is the CPU provider', () => {
    assert.equal(be.name, 'onnxruntime-cpu');
    assert.equal(be.device, 'cpu');
  });

  // [m, k, n]: op(A) is m x k, op(B) is k x n.
  const shapes: Array<[number, number, number]> = [
    [1, 1, 1],
    [7, 3, 5],
    [3, 7, 1],
    [1, 9, 4],
    [300, 77, 41],
    [64, 300, 77],
  ];
  for (const [m, k, n] of shapes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        it(`matmul ${m}x${k} * ${k}x${n} transA=${transA} transB=${transB}`, async () => {
          const a = randomMatrix(transA ? k : m, transA ? m : k, m * 31 + k);
          const b = randomMatrix(transB ? n : k, transB ? k : n, n * 17 + k);
          const C = await be.matmul(a, b, { transA, transB });
          assertProductClose(C, a, b, { transA, transB }, 'ort');
          // the reference itself (float64 accumulation, one float32 rounding) is within half an ulp
          assertProductClose(await ref.matmul(a, b, { transA, transB }), a, b, { transA, transB }, 'reference');
        });
      }
    }
  }

  for (const [r, c] of [
    [1, 1],
    [7, 3],
    [3, 7],
    [300, 77],
  ] as Array<[number, number]>) {
    it(`gram ${r}x${c}: AtA and AAt`, async () => {
      const a = randomMatrix(r, c, r + 100 * c);
      const g1 = await be.gram(a, 'AtA');
      assert.equal(g1.rows, c);
      assertProductClose(g1, a, a, { transA: true }, 'AtA');
      const g2 = await be.gram(a, 'AAt');
      assert.equal(g2.rows, r);
      assertProductClose(g2, a, a, { transB: true }, 'AAt');
    });
  }

  for (const [m, k, n] of [
    [1, 1, 1],
    [7, 3, 5],
    [120, 300, 41],
  ] as Array<[number, number, number]>) {
    it(`matmul64 ${m}x${k} * ${k}x${n}, all transposes, within the float64 bound`, async () => {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const a = randomMatrix64(transA ? k : m, transA ? m : k, m * 13 + k);
          const b = randomMatrix64(transB ? n : k, transB ? k : n, n * 29 + k);
          await assertProduct64Close(await be.matmul64(a, b, { transA, transB }), a, b, { transA, transB }, `ort ${transA} ${transB}`);
        }
      }
    });
  }

  it('gram64 matches the reference within the float64 bound and is exactly symmetric', async () => {
    for (const [r, c] of [
      [1, 1],
      [266, 700],
      [40, 9],
    ] as Array<[number, number]>) {
      const a = randomMatrix64(r, c, r * 3 + c);
      for (const side of ['AtA', 'AAt'] as const) {
        const g = await be.gram64(a, side);
        const d = side === 'AtA' ? c : r;
        assert.equal(g.rows, d);
        await assertProduct64Close(g, a, a, side === 'AtA' ? { transA: true } : { transB: true }, `gram64 ${side} ${r}x${c}`);
        for (let i = 0; i < d; i++) for (let j = 0; j < i; j++) assert.equal(g.data[i * d + j], g.data[j * d + i], `symmetric at ${i},${j}`);
      }
    }
  });

  it('float64 products keep what float32 would round away', async () => {
    // (1 + 2^-30)^2 = 1 + 2^-29 (+ 2^-60, below float64's rounding): float32 would hold the inputs as 1.
    const a: Matrix64 = { rows: 1, cols: 1, data: new Float64Array([1 + 2 ** -30]) };
    const b: Matrix64 = { rows: 1, cols: 1, data: new Float64Array([1 + 2 ** -30]) };
    const c = await be.matmul64(a, b);
    assert.equal(c.data[0], 1 + 2 ** -29);
    await assert.rejects(be.matmul64({ rows: 1, cols: 1, data: new Float32Array(1) as unknown as Float64Array }, b), /must be a Float64Array/);
    const e = await be.gram64({ rows: 0, cols: 3, data: new Float64Array(0) }, 'AtA');
    assert.deepEqual(Array.from(e.data), new Array(9).fill(0));
  });

  it('known small product and subarray views (non-zero byteOffset) as input', async () => {
    const buf = new Float32Array([99, 1, 2, 3, 4]);
    const a = createMatrix(2, 2, buf.subarray(1));
    const c = await be.matmul(a, a);
    assert.deepEqual(Array.from(c.data), [7, 10, 15, 22]);
    const b = matrixFromRows([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    assert.deepEqual(Array.from((await be.matmul(b, b, { transB: true })).data), [14, 32, 32, 77]);
    assert.deepEqual(transposeMatrix(b).data, Float32Array.from([1, 4, 2, 5, 3, 6]));
  });

  it('empty dimensions give empty or zero results without calling onnxruntime', async () => {
    const c1 = await be.matmul(createMatrix(0, 3), createMatrix(3, 4));
    assert.equal(c1.rows, 0);
    assert.equal(c1.cols, 4);
    const c2 = await be.matmul(createMatrix(3, 0), createMatrix(0, 4));
    assert.deepEqual(Array.from(c2.data), new Array(12).fill(0));
    const g = await be.gram(createMatrix(0, 5), 'AtA');
    assert.equal(g.rows, 5);
    assert.ok(g.data.every((v) => v === 0));
  });

  it('rejects mismatched shapes and malformed matrices with clear errors', async () => {
    await assert.rejects(be.matmul(createMatrix(2, 3), createMatrix(2, 3)), /inner dimensions differ/);
    await assert.rejects(be.matmul({ rows: 2, cols: 2, data: new Float32Array(3) }, createMatrix(2, 2)), /does not match shape/);
  });

  it('creates one session per graph kind and reuses it', async () => {
    const ob = be as OrtBackend;
    const s1 = ob.session('matmul_nn');
    await be.matmul(createMatrix(2, 2), createMatrix(2, 2));
    assert.equal(ob.session('matmul_nn'), s1);
    assert.notEqual(ob.session('matmul_nt'), s1);
    // float64 graphs are separate sessions, cached the same way
    const s64 = ob.session('matmul_nn', false, 'float64');
    assert.notEqual(s64, s1);
    assert.equal(ob.session('matmul_nn', false, 'float64'), s64);
  });
});

describe('device selection', () => {
  it("'auto' uses CUDA when it works, otherwise falls back to the CPU with exactly one log line", async () => {
    const lines: string[] = [];
    const be = await createBackend({ device: 'auto', threads: 1, log: (l) => lines.push(l) });
    try {
      if (be.device === 'cuda') {
        assert.equal(be.name, 'onnxruntime-cuda');
        assert.equal(lines.length, 0);
      } else {
        assert.equal(be.name, 'onnxruntime-cpu');
        assert.equal(lines.length, 1);
        assert.match(lines[0], /CUDA not available \(.+\); using onnxruntime on the CPU/);
      }
      const c = await be.matmul(matrixFromRows([[3]]), matrixFromRows([[4]]));
      assert.equal(c.data[0], 12);
    } finally {
      await be.dispose();
    }
  });

  it("'cuda' either works or fails with a clear error", async () => {
    let be: ComputeBackend | undefined;
    try {
      be = await createBackend({ device: 'cuda' });
    } catch (err) {
      assert.match((err as Error).message, /CUDA compute was requested .* could not use it: .+ Use device 'auto' or 'cpu'/);
      return;
    }
    assert.equal(be.device, 'cuda');
    const a = randomMatrix(33, 17, 1);
    assertProductClose(await be.matmul(a, a, { transB: true }), a, a, { transB: true }, 'cuda');
    await be.dispose();
  });

  it('a disposed backend refuses work', async () => {
    const be = await createBackend({ device: 'cpu', threads: 1 });
    await be.dispose();
    await assert.rejects(be.matmul(createMatrix(1, 1), createMatrix(1, 1)), /after dispose/);
  });
});
