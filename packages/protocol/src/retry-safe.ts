import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

/**
 * Request header of ProcessCommand: an opaque key (at most MAX_IDEMPOTENCY_KEY_BYTES bytes) that
 * makes the command retry-safe. The first call with a key on an entity runs; later calls with the
 * same key on the same entity, within the retention window, get the first call's outcome.
 */
export const IDEMPOTENCY_KEY_HEADER = 'x-cos-idempotency-key';

/** Longest idempotency key, in bytes (UTF-8). */
export const MAX_IDEMPOTENCY_KEY_BYTES = 128;

/**
 * Request header of ProcessCommand: a decimal revision; the command runs only if the entity is
 * at that revision when its turn comes (0: the entity has no event yet), else FAILED_PRECONDITION
 * with a google.rpc.ErrorInfo detail (reason REVISION_MISMATCH, metadata `expected`, `actual`).
 */
export const EXPECTED_REVISION_HEADER = 'x-cos-expected-revision';

/** google.rpc.ErrorInfo `domain` of the errors COS itself raises. */
export const COS_ERROR_DOMAIN = 'chiefofstate';

/** ErrorInfo `reason` of a failed x-cos-expected-revision check; metadata `expected`, `actual`. */
export const REVISION_MISMATCH_REASON = 'REVISION_MISMATCH';

/** ErrorInfo `reason` of an idempotency key reused with another command body. */
export const IDEMPOTENCY_KEY_REUSED_REASON = 'IDEMPOTENCY_KEY_REUSED';

/** Type URL of google.rpc.ErrorInfo in a google.rpc.Status's details. */
export const ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo';

/** google.rpc.ErrorInfo: `reason = 1; domain = 2; map<string, string> metadata = 3`. */
export interface ErrorInfo {
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Readonly<Record<string, string>>;
}

/** Encodes google.rpc.ErrorInfo (metadata entries in the order given). */
export function encodeErrorInfo(info: ErrorInfo): Uint8Array {
  const writer = new BinaryWriter();
  if (info.reason !== '') writer.tag(1, WireType.LengthDelimited).string(info.reason);
  if (info.domain !== '') writer.tag(2, WireType.LengthDelimited).string(info.domain);
  for (const [key, value] of Object.entries(info.metadata)) {
    writer.tag(3, WireType.LengthDelimited).fork();
    writer.tag(1, WireType.LengthDelimited).string(key);
    writer.tag(2, WireType.LengthDelimited).string(value);
    writer.join();
  }
  return writer.finish();
}

/** Decodes google.rpc.ErrorInfo; unknown fields are skipped. */
export function decodeErrorInfo(bytes: Uint8Array): ErrorInfo {
  let reason = '';
  let domain = '';
  const metadata: Record<string, string> = {};
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) reason = reader.string();
    else if (field === 2 && wireType === WireType.LengthDelimited) domain = reader.string();
    else if (field === 3 && wireType === WireType.LengthDelimited) {
      const entry = new BinaryReader(reader.bytes());
      let key = '';
      let value = '';
      while (entry.pos < entry.len) {
        const [f, w] = entry.tag();
        if (f === 1 && w === WireType.LengthDelimited) key = entry.string();
        else if (f === 2 && w === WireType.LengthDelimited) value = entry.string();
        else entry.skip(w);
      }
      metadata[key] = value;
    } else reader.skip(wireType);
  }
  return { reason, domain, metadata };
}
