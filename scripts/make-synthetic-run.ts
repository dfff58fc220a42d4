// Writes the deterministic synthetic example run: `node dist/make-synthetic-run.js OUT_DIR`.
import { writeSyntheticRun } from '../src/examples/synthetic';

const out = process.argv[2];
if (!out) {
  console.error('usage: make-synthetic-run OUT_DIR');
  process.exit(2);
}
writeSyntheticRun(out).then(
  (r) => console.log(`wrote ${r.base} and ${r.checkpoints.length} checkpoints`),
  (e: Error) => {
    console.error(e.message);
    process.exit(1);
  },
);
