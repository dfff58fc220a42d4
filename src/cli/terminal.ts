/**
 * What the CLI prints. Names come from files other people wrote (tensor names, folder names, JSON
 * metadata): control characters in them could move the cursor, recolour or rewrite the terminal, so
 * everything printed goes through `printable`. Notices respect --quiet; errors always print.
 */
/** What a progress line shows: any pass's phase, the tensor at hand and the share done. */
export interface PassProgress {
  phase: string;
  tensor: string;
  index: number;
  total: number;
  fraction: number;
}

// C0 controls but newline, DEL, C1 controls, and the bidirectional overrides that reorder what is shown.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `s` with every control character but the newline shown as an escape (`\x1b`, `\u202e`). */
export function printable(s: string): string {
  return s.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** One name on one line: newlines escaped too. */
export function printableName(s: string): string {
  return printable(s).replace(/\n/g, '\\n');
}

export interface Terminal {
  /** stdout: the tables. */
  out(text: string): void;
  /** stderr: a notice (device fallback, cache use); silent with --quiet. */
  notice(text: string): void;
  /** stderr: an error; always printed. */
  error(text: string): void;
  quiet: boolean;
}

export function terminal(quiet: boolean): Terminal {
  return {
    quiet,
    out: (text) => console.log(printable(text)),
    notice: (text) => {
      if (!quiet) console.error(printable(`gatescope: ${text}`));
    },
    error: (text) => console.error(printable(`gatescope: ${text}`)),
  };
}

/** Progress of one analysis on stderr: a rewritten line on a terminal, every 10% otherwise; silent for the first second. */
export function progressPrinter(quiet: boolean, label: string): (p: PassProgress) => void {
  if (quiet) return () => undefined;
  const started = Date.now();
  let lastPct = -1;
  const tty = process.stderr.isTTY;
  const shownLabel = printableName(label);
  return (p) => {
    const pctDone = Math.floor(p.fraction * 100);
    if (Date.now() - started < 1000) return;
    if (tty) {
      process.stderr.write(`\r\x1b[K${shownLabel} ${pctDone}% ${p.phase} ${printableName(p.tensor).slice(0, 60)}`);
      if (p.fraction >= 1) process.stderr.write('\r\x1b[K');
    } else if (pctDone >= lastPct + 10 || p.fraction >= 1) {
      lastPct = pctDone - (pctDone % 10);
      process.stderr.write(`${shownLabel} ${pctDone}% (${p.phase}, ${p.index}/${p.total} tensors)\n`);
    }
  };
}
