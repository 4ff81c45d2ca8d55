import { BinaryReader } from '@bufbuild/protobuf/wire';

/** One google.protobuf.Any of a google.rpc.Status, with its type URL exactly as sent. */
export interface RawStatusDetail {
  readonly typeUrl: string;
  readonly value: Uint8Array;
}

/** google.rpc.Status as carried base64-encoded in the `grpc-status-details-bin` trailer. */
export interface RawRpcStatus {
  code: number;
  message: string;
  details: RawStatusDetail[];
}

/**
 * Decodes google.rpc.Status (`code = 1 int32; message = 2 string; details = 3 repeated Any`) by
 * hand: Connect's own decoding keeps only the type name of each detail, and COS must hand the
 * handler's details back to its caller verbatim, type URL prefix included.
 */
export function decodeRpcStatus(bytes: Uint8Array): RawRpcStatus {
  const status: RawRpcStatus = { code: 0, message: '', details: [] };
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === 0) status.code = reader.int32();
    else if (field === 2 && wireType === 2) status.message = reader.string();
    else if (field === 3 && wireType === 2) {
      const any = new BinaryReader(reader.bytes());
      let typeUrl = '';
      let value = new Uint8Array(0);
      while (any.pos < any.len) {
        const [f, w] = any.tag();
        if (f === 1 && w === 2) typeUrl = any.string();
        else if (f === 2 && w === 2) value = any.bytes().slice();
        else any.skip(w);
      }
      status.details.push({ typeUrl, value });
    } else reader.skip(wireType);
  }
  return status;
}

/** Decodes a `-bin` metadata value (base64, padded or not). */
export function decodeBinaryHeaderValue(value: string): Uint8Array {
  // Several values of one -bin header arrive joined by ", "; the status trailer has one.
  const first = value.split(',')[0]!.trim();
  const buffer = Buffer.from(first, 'base64');
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}
