import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

/** One google.protobuf.Any of a google.rpc.Status, its type URL exactly as given. */
export interface RpcStatusDetail {
  readonly typeUrl: string;
  readonly value: Uint8Array;
}

/** google.rpc.Status, the payload of the `grpc-status-details-bin` trailer. */
export interface RpcStatus {
  readonly code: number;
  readonly message: string;
  readonly details: readonly RpcStatusDetail[];
}

/**
 * Encodes google.rpc.Status (`code = 1 int32; message = 2 string; details = 3 repeated Any`) by
 * hand, keeping each detail's type URL as given (protobuf-es would need the detail types).
 */
export function encodeRpcStatus(status: RpcStatus): Uint8Array {
  const writer = new BinaryWriter();
  if (status.code !== 0) writer.tag(1, WireType.Varint).int32(status.code);
  if (status.message !== '') writer.tag(2, WireType.LengthDelimited).string(status.message);
  for (const detail of status.details) {
    writer.tag(3, WireType.LengthDelimited).fork();
    writer.tag(1, WireType.LengthDelimited).string(detail.typeUrl);
    writer.tag(2, WireType.LengthDelimited).bytes(detail.value);
    writer.join();
  }
  return writer.finish();
}

/** Decodes google.rpc.Status; each detail's bytes are copied out of `bytes`. */
export function decodeRpcStatus(bytes: Uint8Array): RpcStatus {
  let code = 0;
  let message = '';
  const details: RpcStatusDetail[] = [];
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.Varint) code = reader.int32();
    else if (field === 2 && wireType === WireType.LengthDelimited) message = reader.string();
    else if (field === 3 && wireType === WireType.LengthDelimited) {
      const any = new BinaryReader(reader.bytes());
      let typeUrl = '';
      let value = new Uint8Array(0);
      while (any.pos < any.len) {
        const [f, w] = any.tag();
        if (f === 1 && w === WireType.LengthDelimited) typeUrl = any.string();
        else if (f === 2 && w === WireType.LengthDelimited) value = any.bytes().slice();
        else any.skip(w);
      }
      details.push({ typeUrl, value });
    } else reader.skip(wireType);
  }
  return { code, message, details };
}
