export { runCosProcess, type Closeable, type RunCosProcessOptions } from './run-cos-process.js';
