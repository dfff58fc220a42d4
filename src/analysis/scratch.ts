/**
 * Matrix-sized float32 scratch kept from one tensor to the next, for the spectral pass's update dW and the
 * verdict's nulls' draws. Fresh pages cost on first touch: 133 ms for one
 * 8960 x 1536 float32 matrix (55 MB) on a 2-core virtual machine, more than the loop that fills it. Two
 * tensors are in flight at once, each taking up to two (the update while its subspaces are computed, the
 * nulls' two draws after it is given back); only matrices up to SCRATCH_MAX_BYTES are kept, so an
 * embedding-sized draw is freed when its tensor is done. A taken array holds whatever it last held: its
 * taker overwrites it whole before reading it.
 */
const SCRATCH_MAX_BYTES = 128 * 1024 * 1024;
const SCRATCH_KEPT = 4;
const scratch: Float32Array[] = [];

export function takeScratch(length: number): Float32Array {
  let best = -1;
  for (let i = 0; i < scratch.length; i++) if (scratch[i].length >= length && (best < 0 || scratch[i].length < scratch[best].length)) best = i;
  if (best < 0) return new Float32Array(length);
  const [a] = scratch.splice(best, 1);
  return a.length === length ? a : a.subarray(0, length);
}

export function giveScratch(a: Float32Array): void {
  const whole = new Float32Array(a.buffer);
  if (whole.byteLength > SCRATCH_MAX_BYTES) return;
  scratch.push(whole);
  // Keep the largest: a later large tensor can use a large buffer, not the other way round.
  if (scratch.length > SCRATCH_KEPT) {
    scratch.sort((x, y) => y.length - x.length);
    scratch.length = SCRATCH_KEPT;
  }
}
