/** Dense float64 algebra for Gatescope (no vscode, no native code). See each module for the why. */
export { qr, householderColumnMajor, formQColumnMajor, orthonormalizeColumnMajor, transposeToColumnMajor } from './qr';
export type { QrResult, HouseholderFactors } from './qr';
export { symmetricEigen, symmetricEigenvalues, symmetricEigenJacobi, symmetricEigenTop } from './eigen';
export type { EigenResult } from './eigen';
export { jacobiSvd, singularValuesJacobi, completeOrthonormalColumns } from './svd';
export type { DenseSvd, JacobiOptions } from './svd';
export { principalAnglesDeg } from './angles';
export { truncatedSvd, singularValuesFull, spectralNorm, svdResiduals, DEFAULT_FULL_IF_MIN_DIM_AT_MOST } from './truncated-svd';
export { choleskyQr2Rows } from './cholqr';
export type { SvdResult, TruncatedSvdOptions, SpectralNormOptions, SpectralNormResult } from './truncated-svd';
export { Rng } from './random';
export { gramRows, crossProduct, frobeniusNorm, allFinite } from './dense';
