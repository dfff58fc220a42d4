/**
 * The ONNX graphs the onnxruntime backend runs, built here in code with onnx-proto (no model files to
 * ship, no Python export step, and the graphs are reviewable next to the code that feeds them).
 *
 * Each graph is one `Gemm` node (alpha = 1, no C input), float32 or float64, with symbolic (dim_param)
 * shapes so one session serves every matrix size. Transposes are Gemm attributes, not Transpose nodes: both the
 * CPU provider (MLAS sgemm) and the CUDA provider (cuBLAS) consume transposed operands in place, so a
 * 1536 x 8960 weight is never copied just to be read the other way round.
 *
 * The Gram graphs feed the same input to both Gemm operands: onnxruntime then transfers the matrix
 * once (relevant for CUDA, where every input is a host-to-device copy).
 */
import { onnx } from 'onnx-proto';

/** ONNX opset and IR version of every graph built here (Gemm without C needs opset >= 11). */
export const OPSET_VERSION = 17;
export const IR_VERSION = 8;

/** The graph kinds, one cached session each. `n` = as is, `t` = transposed, for A then B. */
export type GraphKind = 'matmul_nn' | 'matmul_nt' | 'matmul_tn' | 'matmul_tt' | 'gram_AtA' | 'gram_AAt';

export const GRAPH_KINDS: readonly GraphKind[] = ['matmul_nn', 'matmul_nt', 'matmul_tn', 'matmul_tt', 'gram_AtA', 'gram_AAt'];

/** Names of inputs and the output, shared by all graphs. */
export const INPUT_A = 'A';
export const INPUT_B = 'B';
export const OUTPUT_C = 'C';

/** The element type of a graph's inputs and output. */
export type GraphPrecision = 'float32' | 'float64';

const ELEM_TYPE: Record<GraphPrecision, onnx.TensorProto.DataType> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
};

function tensorValueInfo(name: string, dims: readonly string[], precision: GraphPrecision): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM_TYPE[precision],
        shape: { dim: dims.map((d) => ({ dimParam: d })) },
      },
    },
  };
}

function intAttr(name: string, value: number): onnx.IAttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.INT, i: value };
}

function floatAttr(name: string, value: number): onnx.IAttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: value };
}

/** The graph (as a message) for one kind and precision. Exposed for tests and debugging. */
export function buildGraphModel(kind: GraphKind, precision: GraphPrecision = 'float32'): onnx.IModelProto {
  const tensor = (name: string, dims: readonly string[]) => tensorValueInfo(name, dims, precision);
  let transA = 0;
  let transB = 0;
  let inputs: onnx.IValueInfoProto[];
  let gemmInputs: string[];
  switch (kind) {
    case 'matmul_nn':
      inputs = [tensor(INPUT_A, ['M', 'K']), tensor(INPUT_B, ['K', 'N'])];
      gemmInputs = [INPUT_A, INPUT_B];
      break;
    case 'matmul_nt':
      transB = 1;
      inputs = [tensor(INPUT_A, ['M', 'K']), tensor(INPUT_B, ['N', 'K'])];
      gemmInputs = [INPUT_A, INPUT_B];
      break;
    case 'matmul_tn':
      transA = 1;
      inputs = [tensor(INPUT_A, ['K', 'M']), tensor(INPUT_B, ['K', 'N'])];
      gemmInputs = [INPUT_A, INPUT_B];
      break;
    case 'matmul_tt':
      transA = 1;
      transB = 1;
      inputs = [tensor(INPUT_A, ['K', 'M']), tensor(INPUT_B, ['N', 'K'])];
      gemmInputs = [INPUT_A, INPUT_B];
      break;
    case 'gram_AtA':
      // A is R x N; C = A^T A is N x N.
      transA = 1;
      inputs = [tensor(INPUT_A, ['R', 'N'])];
      gemmInputs = [INPUT_A, INPUT_A];
      break;
    case 'gram_AAt':
      // A is M x R; C = A A^T is M x M.
      transB = 1;
      inputs = [tensor(INPUT_A, ['M', 'R'])];
      gemmInputs = [INPUT_A, INPUT_A];
      break;
  }
  const outDims = kind === 'gram_AtA' ? ['N', 'N'] : kind === 'gram_AAt' ? ['M', 'M'] : ['M', 'N'];
  const node: onnx.INodeProto = {
    opType: 'Gemm',
    name: `gemm_${kind}_${precision}`,
    input: gemmInputs,
    output: [OUTPUT_C],
    attribute: [floatAttr('alpha', 1), floatAttr('beta', 1), intAttr('transA', transA), intAttr('transB', transB)],
  };
  return {
    irVersion: IR_VERSION,
    producerName: 'gatescope',
    producerVersion: '1',
    opsetImport: [{ domain: '', version: OPSET_VERSION }],
    graph: {
      name: `gatescope_${kind}_${precision}`,
      node: [node],
      input: inputs,
      output: [tensor(OUTPUT_C, outDims)],
    },
  };
}

/** Serialized ONNX model bytes for one kind and precision, ready for `InferenceSession.create(bytes, ...)`. */
export function buildGraph(kind: GraphKind, precision: GraphPrecision = 'float32'): Uint8Array {
  const model = onnx.ModelProto.create(buildGraphModel(kind, precision));
  return onnx.ModelProto.encode(model).finish();
}

/** The graph kind for a product with the given transpose flags. */
export function matmulKind(transA: boolean, transB: boolean): GraphKind {
  return transA ? (transB ? 'matmul_tt' : 'matmul_tn') : transB ? 'matmul_nt' : 'matmul_nn';
}
