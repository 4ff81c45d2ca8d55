import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bearerToken, parseTokens, watchTokenFile } from './token-file.js';

const dir = mkdtempSync(join(tmpdir(), 'cos-tokens-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('token files', () => {
  it('accepts each listed token and nothing else', () => {
    const tokens = parseTokens('# app tokens\nfirst-token-0123456789\n\n  second-token-0123456789  \n');
    expect(tokens.size).toBe(2);
    expect(tokens.accepts('first-token-0123456789')).toBe(true);
    expect(tokens.accepts('second-token-0123456789')).toBe(true);
    expect(tokens.accepts('first-token-012345678')).toBe(false);
    expect(tokens.accepts('')).toBe(false);
  });

  it('refuses an empty file, short tokens and spaces, without quoting the token', () => {
    expect(() => parseTokens('# nothing\n')).toThrow(/no token/);
    expect(() => parseTokens('short')).toThrow(/line 1: a token must be at least 16/);
    expect(() => parseTokens('x\n has a space inside it')).toThrow(/line 1/);
    expect(() => parseTokens('abcdefghijklmnop qrst')).toThrow(/^line 1: a token is printable ASCII without spaces$/);
  });

  it('rotates: the file re-read accepts the new token and no longer the removed one', async () => {
    const path = join(dir, 'tokens');
    writeFileSync(path, 'old-token-0123456789\n');
    const file = watchTokenFile({ path, intervalMs: 0 });
    writeFileSync(path, 'old-token-0123456789\nnew-token-0123456789\n');
    await file.refresh();
    expect(file.current().accepts('new-token-0123456789')).toBe(true);
    writeFileSync(path, 'new-token-0123456789\n');
    await file.refresh();
    expect(file.current().accepts('old-token-0123456789')).toBe(false);
    // an emptied file is a mistake: the last good tokens stay
    writeFileSync(path, '');
    expect(await file.refresh()).toBe(false);
    expect(file.current().accepts('new-token-0123456789')).toBe(true);
    file.close();
  });

  it('reads the token of a Bearer authorization header only', () => {
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('bearer   abc ')).toBe('abc');
    expect(bearerToken('Basic abc')).toBeUndefined();
    expect(bearerToken('Bearer a b')).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
  });
});
