import { describe, expect, it } from 'vitest';
import { openBalanceStore } from './balance-store.js';

describe('openBalanceStore with a URL', () => {
  it("refuses libpq's allow and prefer, without showing the URL", async () => {
    for (const mode of ['allow', 'prefer', 'verify']) {
      const error = await openBalanceStore({ databaseUrl: `postgres://u:pw-not-shown@127.0.0.1:1/bank?sslmode=${mode}` }).catch(
        (caught: unknown) => caught,
      );
      expect(String(error)).toContain(`sslmode=${mode} is not supported; use disable, require, verify-ca, verify-full`);
      expect(String(error)).not.toContain('pw-not-shown');
    }
  });
});
