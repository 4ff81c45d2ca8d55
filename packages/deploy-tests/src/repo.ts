import { fileURLToPath } from 'node:url';

/** The repository root (this file sits three levels below it, in src/ or dist/). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
