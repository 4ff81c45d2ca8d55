import { createHmac, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '@chiefofstate/core';

/** A call one replica forwards to another, as its proof covers it. */
export interface ForwardedCall {
  /** the forwarding replica's address, as in the forwarding mark */
  readonly by: string;
  readonly method: 'ProcessCommand' | 'GetState';
  readonly entityId: string;
  /** forwards so far, this one included: 1, or 2 for a call the receiver forwarded once more */
  readonly hops: number;
}

export type ProofVerdict = { readonly ok: true; readonly hops: number } | { readonly ok: false; readonly reason: string };

export interface ForwardingAuthOptions {
  /** the cluster secret every replica shares (COS_CLUSTER_SECRET, or the database's) */
  readonly secret: Uint8Array | string;
  /** most a proof's time may differ from this process's clock, ms (COS_CLUSTER_MAX_CLOCK_SKEW) */
  readonly maxSkewMs: number;
  /** epoch ms; default Date.now */
  readonly now?: () => number;
}

/** Proves and checks that a forwarded call comes from a replica that knows the cluster secret. */
export interface ForwardingAuth {
  /** the proof header's value for a call this process forwards */
  prove(call: ForwardedCall): string;
  /** checks the proof of a call received with a forwarding mark; never throws */
  verify(call: Omit<ForwardedCall, 'hops'>, proof: string | undefined): ProofVerdict;
}

/** Most forwards of one call: the first, and one more by a receiver that no longer owns the shard. */
export const MAX_FORWARDS = 2;

const PROOF = /^v1\.([1-9])\.(\d{1,15})\.([A-Za-z0-9_-]{43})$/;

/**
 * `v1.<hops>.<epoch ms>.<HMAC-SHA256, base64url>` over the mark, method, hops, time and entity
 * id: the secret never travels, and a proof is good for that call's entity and method only, for
 * `maxSkewMs` either side of its time (a replay within that window needs the traffic, which
 * mTLS between replicas will close).
 */
export function createForwardingAuth(options: ForwardingAuthOptions): ForwardingAuth {
  const key = typeof options.secret === 'string' ? Buffer.from(options.secret, 'utf8') : Buffer.from(options.secret);
  if (key.byteLength === 0) throw new InvalidArgumentError('the cluster secret is empty');
  const { maxSkewMs } = options;
  const now = options.now ?? (() => Date.now());

  const mac = (call: ForwardedCall, at: string): Buffer =>
    // the entity id last: the fields before it hold no newline (a header value, digits, names)
    createHmac('sha256', key).update(`cos-forward-v1\n${call.method}\n${call.hops}\n${at}\n${call.by}\n${call.entityId}`).digest();

  return {
    prove(call) {
      const at = String(now());
      return `v1.${call.hops}.${at}.${mac(call, at).toString('base64url')}`;
    },

    verify(call, proof) {
      if (proof === undefined) return { ok: false, reason: 'no proof' };
      const parsed = PROOF.exec(proof);
      if (parsed === null) return { ok: false, reason: 'malformed proof' };
      const hops = Number(parsed[1]);
      const at = parsed[2]!;
      if (hops > MAX_FORWARDS) return { ok: false, reason: 'too many forwards' };
      if (Math.abs(now() - Number(at)) > maxSkewMs) return { ok: false, reason: 'proof time outside the allowed clock skew' };
      const expected = mac({ ...call, hops }, at);
      const given = Buffer.from(parsed[3]!, 'base64url');
      if (given.byteLength !== expected.byteLength || !timingSafeEqual(given, expected)) return { ok: false, reason: 'wrong proof' };
      return { ok: true, hops };
    },
  };
}
