import { BinaryWriter } from '@bufbuild/protobuf/wire';

/** Encodes google.rpc.Status by hand, so tests control every byte of the details trailer. */
export function encodeRpcStatusForTest(status: {
  code: number;
  message: string;
  details: readonly { typeUrl: string; value: Uint8Array }[];
}): Uint8Array {
  const writer = new BinaryWriter();
  if (status.code !== 0) writer.tag(1, 0).int32(status.code);
  if (status.message !== '') writer.tag(2, 2).string(status.message);
  for (const detail of status.details) {
    writer.tag(3, 2).fork().tag(1, 2).string(detail.typeUrl).tag(2, 2).bytes(detail.value).join();
  }
  return writer.finish();
}
