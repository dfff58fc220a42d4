/**
 * Public surface of the compute layer. onnxruntime is not imported here: `createBackend` loads it on
 * first use (see backend.ts).
 */
export { createBackend, createMatrix, matrixFromFloat64, matrixFromRows, matrixToFloat64, transposeMatrix, checkMatrix, matmulShape } from './backend';
export type { Matrix, DeviceSetting, ComputeBackend, CreateBackendOptions, MatmulOptions } from './backend';
export { ReferenceBackend, createReferenceBackend } from './reference-backend';
