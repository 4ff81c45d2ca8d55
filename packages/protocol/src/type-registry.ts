import { create, createFileRegistry, fromBinary, type DescFile, type FileRegistry } from '@bufbuild/protobuf';
import * as wkt from '@bufbuild/protobuf/wkt';
import { FileDescriptorSetSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { file_chief_of_state_v1_common } from './gen/chief_of_state/v1/common_pb.js';
import { file_chief_of_state_v1_manager } from './gen/chief_of_state/v1/manager_pb.js';
import { file_chief_of_state_v1_persistence } from './gen/chief_of_state/v1/persistence_pb.js';
import { file_chief_of_state_v1_readside } from './gen/chief_of_state/v1/readside_pb.js';
import { file_chief_of_state_v1_service } from './gen/chief_of_state/v1/service_pb.js';
import { file_chief_of_state_v1_writeside } from './gen/chief_of_state/v1/writeside_pb.js';
import { file_grpc_health_v1_health } from './gen/grpc/health/v1/health_pb.js';
import { file_grpc_reflection_v1_reflection } from './gen/grpc/reflection/v1/reflection_pb.js';
import { file_grpc_reflection_v1alpha_reflection } from './gen/grpc/reflection/v1alpha/reflection_pb.js';

/** The files every COS registry holds: the well-known types and COS's own protocol. */
const BUILT_IN_FILES: readonly DescFile[] = [
  // google/protobuf/*.proto, as protobuf-es ships them
  ...Object.entries(wkt)
    .filter(([name]) => name.startsWith('file_google_protobuf_'))
    .map(([, file]) => file as DescFile),
  file_chief_of_state_v1_common,
  file_chief_of_state_v1_service,
  file_chief_of_state_v1_writeside,
  file_chief_of_state_v1_readside,
  file_chief_of_state_v1_manager,
  file_chief_of_state_v1_persistence,
  file_grpc_health_v1_health,
  file_grpc_reflection_v1_reflection,
  file_grpc_reflection_v1alpha_reflection,
];

/** One `google.protobuf.FileDescriptorSet` (what `buf build -o x.binpb` or `protoc -o` writes). */
export interface DescriptorSetInput {
  /** where it came from, for messages */
  readonly name: string;
  readonly bytes: Uint8Array;
}

/**
 * The message types COS knows: the well-known types, chief_of_state.v1, grpc.health.v1 and
 * grpc.reflection, plus every file of the given descriptor sets (COS_PROTO_DESCRIPTOR_SET). JSON
 * surfaces render an Any of a known type as proto3 JSON; reflection describes known files.
 *
 * A file of the sets wins over a built-in of the same name; a file may import one of another set
 * or a built-in (a set built with `--exclude-imports` works when its imports are well-known
 * types or COS's protos).
 *
 * @throws Error naming the set when one is not a FileDescriptorSet, or a file's import is found nowhere
 */
export function createTypeRegistry(sets: readonly DescriptorSetInput[] = []): FileRegistry {
  const files = new Map<string, FileDescriptorProto>();
  const origin = new Map<string, string>();
  for (const set of sets) {
    let parsed;
    try {
      parsed = fromBinary(FileDescriptorSetSchema, set.bytes);
    } catch (error) {
      throw new Error(`${set.name} is not a FileDescriptorSet (${error instanceof Error ? error.message : String(error)})`, { cause: error });
    }
    if (parsed.file.length === 0) throw new Error(`${set.name} holds no file: expected the output of buf build -o <file>.binpb`);
    for (const file of parsed.file) {
      if (files.has(file.name)) continue;
      files.set(file.name, file);
      origin.set(file.name, set.name);
    }
  }
  for (const file of BUILT_IN_FILES) if (!files.has(file.proto.name)) files.set(file.proto.name, file.proto);

  // dependencies before dependents, as createFileRegistry reads a set
  const ordered: FileDescriptorProto[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (name: string, importedBy: string | undefined): void => {
    if (done.has(name)) return;
    const file = files.get(name);
    if (file === undefined) {
      throw new Error(
        `${importedBy} (in ${origin.get(importedBy ?? '') ?? 'the descriptor sets'}) imports ${name}, which is in no descriptor set: build the set with its imports (buf build, without --exclude-imports)`,
      );
    }
    if (visiting.has(name)) throw new Error(`import cycle through ${name}`);
    visiting.add(name);
    for (const dependency of file.dependency) visit(dependency, name);
    visiting.delete(name);
    done.add(name);
    ordered.push(file);
  };
  for (const name of files.keys()) visit(name, undefined);
  try {
    return createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
  } catch (error) {
    throw new Error(`the descriptor sets cannot be read: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}
