import { createHash, timingSafeEqual } from 'node:crypto';
import { watchFiles, type WatchedFiles } from './watched-files.js';

/** Bearer tokens a service accepts. */
export interface TokenSet {
  /** true when `token` is one of the set; constant time in the token's contents */
  accepts(token: string): boolean;
  readonly size: number;
}

export interface WatchTokenFileOptions {
  readonly path: string;
  /** how often the file is read again, ms; 0 never. Default 10 s. */
  readonly intervalMs?: number;
  readonly onChange?: (tokens: TokenSet) => void;
  readonly onError?: (error: unknown) => void;
}

/** Shortest token taken: a guessable credential is worse than none, since it looks like one. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * A file of bearer tokens, one per line (blank lines and lines starting with `#` ignored),
 * re-read when it changes. Holding two lines lets a token be rotated without a refused call:
 * add the new one, move the clients, remove the old one.
 */
export function watchTokenFile(options: WatchTokenFileOptions): WatchedFiles<TokenSet> {
  return watchFiles<TokenSet>({
    paths: [options.path],
    parse: ([contents]) => parseTokens((contents as Buffer).toString('utf8')),
    ...(options.intervalMs !== undefined ? { intervalMs: options.intervalMs } : {}),
    ...(options.onChange ? { onChange: options.onChange } : {}),
    ...(options.onError ? { onError: options.onError } : {}),
  });
}

/** A TokenSet from a token file's text; throws (without quoting a token) when one is unfit. */
export function parseTokens(text: string): TokenSet {
  const digests: Buffer[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (line.length < MIN_TOKEN_LENGTH) throw new Error(`line ${index + 1}: a token must be at least ${MIN_TOKEN_LENGTH} characters`);
    if (!/^[\x21-\x7e]+$/.test(line)) throw new Error(`line ${index + 1}: a token is printable ASCII without spaces`);
    digests.push(digest(line));
  });
  if (digests.length === 0) throw new Error('the token file holds no token');
  return {
    size: digests.length,
    accepts(token) {
      // compares digests, so neither the length nor the contents of a token leak through timing
      const candidate = digest(token);
      let found = false;
      for (const known of digests) found = timingSafeEqual(known, candidate) || found;
      return found;
    },
  };
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** The token of an `authorization: Bearer <token>` header value; undefined for another scheme. */
export function bearerToken(authorization: string | undefined): string | undefined {
  const match = /^Bearer[ ]+([^ ]+)[ ]*$/i.exec(authorization ?? '');
  return match?.[1];
}
