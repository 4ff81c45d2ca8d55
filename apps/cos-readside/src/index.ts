export { startCosReadside, type CosReadsideOptions, type RunningCosReadside } from './cos-readside.js';
