import type { Logger } from '@chiefofstate/core';

/**
 * What start-up has opened so far, to close again, newest first, when a later step fails: a
 * failed start must not leave ports, pools or clients open in an embedder's process.
 */
export interface StartUpUndo {
  /** Registers how to close something just opened. */
  push(name: string, close: () => Promise<unknown> | unknown): void;
  /** Closes everything registered, in reverse order; a failing step is logged and the rest still run. */
  unwind(): Promise<void>;
}

export function createStartUpUndo(logger: Logger): StartUpUndo {
  const steps: { name: string; close: () => Promise<unknown> | unknown }[] = [];
  return {
    push(name, close) {
      steps.push({ name, close });
    },
    async unwind() {
      for (let step = steps.pop(); step; step = steps.pop()) {
        try {
          await step.close();
        } catch (error) {
          logger.warn({ err: error, step: step.name }, 'start-up failed, and closing what it had opened failed too');
        }
      }
    },
  };
}
