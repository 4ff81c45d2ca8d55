import { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';

/**
 * google.rpc.Status, the payload of the `grpc-status-details-bin` trailer, encoded by hand:
 * `code = 1 int32; message = 2 string; details = 3 repeated google.protobuf.Any`. Stock gRPC
 * clients read rich error details from it, so tests check it byte for byte.
 */
export interface RpcStatus {
  code: number;
  message: string;
  details: { typeUrl: string; value: Uint8Array }[];
}

export function encodeRpcStatus(status: RpcStatus): Uint8Array {
  const writer = new BinaryWriter();
  if (status.code !== 0) writer.tag(1, 0).int32(status.code);
  if (status.message !== '') writer.tag(2, 2).string(status.message);
  for (const detail of status.details) {
    writer.tag(3, 2).fork().tag(1, 2).string(detail.typeUrl).tag(2, 2).bytes(detail.value).join();
  }
  return writer.finish();
}

export function decodeRpcStatus(bytes: Uint8Array): RpcStatus {
  const status: RpcStatus = { code: 0, message: '', details: [] };
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1) status.code = reader.int32();
    else if (field === 2) status.message = reader.string();
    else if (field === 3) {
      const any = new BinaryReader(reader.bytes());
      const detail: { typeUrl: string; value: Uint8Array } = { typeUrl: '', value: new Uint8Array(0) };
      while (any.pos < any.len) {
        const [f, w] = any.tag();
        if (f === 1) detail.typeUrl = any.string();
        else if (f === 2) detail.value = any.bytes();
        else any.skip(w);
      }
      status.details.push(detail);
    } else reader.skip(wireType);
  }
  return status;
}
