import type { Any } from '@bufbuild/protobuf/wkt';

/*
 * Sizes of protobuf messages COS builds around a state, worked out from bytes already at hand
 * (the serialized EventWrapper) instead of serializing again on the command path. Every message
 * involved is a few length-delimited fields with one-byte tags, so a field holding `n` bytes
 * takes 1 + varint(n) + n.
 */

export function varintBytes(value: number): number {
  // lengths stay under 2^31 (the largest message limit)
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5;
}

/** A length-delimited field (tag under 16) holding `length` bytes; absent when empty (proto3). */
export function fieldBytes(length: number): number {
  return length === 0 ? 0 : 1 + varintBytes(length) + length;
}

/** A message field holding an Any, as protobuf-es writes it (unknown fields aside). */
export function anyFieldBytes(any: Any | undefined): number {
  if (any === undefined) return 0;
  const inner = fieldBytes(utf8Bytes(any.typeUrl)) + fieldBytes(any.value.byteLength);
  // a set message field is written even when empty
  return 1 + varintBytes(inner) + inner;
}

/** The read_side_id field of HandleReadSideRequest for the longest of `ids`. */
export function readSideIdFieldBytes(ids: readonly string[]): number {
  let longest = 0;
  for (const id of ids) longest = Math.max(longest, utf8Bytes(id));
  return fieldBytes(longest);
}

function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}
