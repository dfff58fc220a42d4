import pkg from '../package.json';

/** The tool version written into every report. */
export const VERSION: string = pkg.version;
