import { create, toBinary } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import { EventWrapperSchema, MetaDataSchema } from '@chiefofstate/protocol';

const text = new TextEncoder();

/**
 * A serialized EventWrapper of `entityId` at `revision`, for journal and read-side tests: the
 * event's value is `<entityId>@<revision>` and the state's `state <revision>`, so a handler
 * that echoes them shows exactly which event it got.
 */
export function eventPayload(entityId: string, revision: number): Uint8Array {
  return toBinary(
    EventWrapperSchema,
    create(EventWrapperSchema, {
      event: create(AnySchema, { typeUrl: 'type.googleapis.com/test.Event', value: text.encode(`${entityId}@${revision}`) }),
      resultingState: create(AnySchema, { typeUrl: 'type.googleapis.com/test.State', value: text.encode(`state ${revision}`) }),
      meta: create(MetaDataSchema, { entityId, revisionNumber: revision }),
    }),
  );
}
