export { startQuickstart, instructions, type QuickstartOptions, type RunningQuickstart } from './quickstart.js';
