/**
 * Whether the store answers, judged by a probe on a connection of its own. A connection failure
 * anywhere (`suspect`) starts probing; while the probe fails the store counts as down, and the
 * pool refuses statements at once instead of letting every caller wait for its timeout. The
 * probe repeats with a bounded backoff until it succeeds, so service returns by itself.
 */
export interface StoreAvailability {
  /** false from a failed probe until a probe succeeds */
  available(): boolean;
  /** the failure that made the store count as down, while it is */
  lastError(): unknown;
  /** connection failures reported since start (metrics) */
  failures(): number;
  /** A connection failed: count it and probe the store (unless a probe is already running). */
  suspect(error: unknown): void;
  /** Something is slow (a statement long without answer): probe the store, counting no failure. */
  check(): void;
  /** Stops probing. */
  close(): void;
}

export interface StoreAvailabilityOptions {
  /** resolves when the store answers as a writable primary; bounded in time by the caller */
  readonly probe: () => Promise<void>;
  /** told when the store goes down (with the probe's error) and when it is back */
  readonly onChange?: (available: boolean, error?: unknown) => void;
  /** first wait between failed probes, doubled up to maxBackoffMs. Default 200 */
  readonly minBackoffMs?: number;
  /** Default 2000 */
  readonly maxBackoffMs?: number;
}

export function createStoreAvailability(options: StoreAvailabilityOptions): StoreAvailability {
  const minBackoffMs = options.minBackoffMs ?? 200;
  const maxBackoffMs = options.maxBackoffMs ?? 2000;
  let available = true;
  let lastError: unknown;
  let failures = 0;
  let probing = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      wake = resolve;
      timer = setTimeout(resolve, ms);
      // a process whose only work left is probing a dead store may exit
      timer.unref();
    });

  const probeUntilUp = async (): Promise<void> => {
    let backoff = minBackoffMs;
    while (!closed) {
      try {
        await options.probe();
        if (closed) return;
        if (!available) {
          available = true;
          lastError = undefined;
          options.onChange?.(true);
        }
        return;
      } catch (error) {
        if (closed) return;
        lastError = error;
        if (available) {
          available = false;
          options.onChange?.(false, error);
        }
      }
      await sleep(backoff);
      backoff = Math.min(maxBackoffMs, backoff * 2);
    }
  };

  const startProbing = () => {
    if (probing || closed) return;
    probing = true;
    void probeUntilUp().finally(() => (probing = false));
  };

  return {
    available: () => available,
    lastError: () => lastError,
    failures: () => failures,
    suspect() {
      failures++;
      startProbing();
    },
    check: () => startProbing(),
    close() {
      closed = true;
      clearTimeout(timer);
      wake?.();
    },
  };
}
