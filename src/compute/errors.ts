/** The compute device the user asked for cannot be used here (no GPU, no CUDA runtime): their setup, not a bug. */
export class DeviceUnavailableError extends Error {
  override name = 'DeviceUnavailableError';
}
