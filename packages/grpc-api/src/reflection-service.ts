import { create, fromBinary, toBinary, type DescFile, type FileRegistry } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { Code, type ConnectRouter, type ServiceImpl } from '@connectrpc/connect';
import { ReflectionV1, ReflectionV1alpha } from '@chiefofstate/protocol';

type V1Request = ReflectionV1.ServerReflectionRequest;
type V1Response = ReflectionV1.ServerReflectionResponse;

export interface ReflectionOptions {
  /** the files described: COS's own and the user's (COS_PROTO_DESCRIPTOR_SET) */
  readonly registry: FileRegistry;
  /** the services the server serves, by full name, as list_services answers */
  readonly services: () => readonly string[];
}

/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha, the same protocol under two names;
 * grpcurl, grpcui and Postman try v1 first), so tools discover COS's services and the user's
 * types without proto files. Each request on the stream gets one response: the services
 * served, or a file with every file it imports (files by name, or by a symbol they declare: a
 * message, enum, service, method or extension). What is not known gets an ErrorResponse
 * (NOT_FOUND) and the stream goes on.
 */
export function createReflectionService(options: ReflectionOptions): {
  v1: ServiceImpl<typeof ReflectionV1.ServerReflection>;
  v1alpha: ServiceImpl<typeof ReflectionV1alpha.ServerReflection>;
} {
  const answer = (request: V1Request): V1Response => respond(options, request);
  return {
    v1: {
      async *serverReflectionInfo(requests) {
        for await (const request of requests) yield answer(request);
      },
    },
    v1alpha: {
      // the same messages, field for field: answered through v1
      async *serverReflectionInfo(requests) {
        for await (const request of requests) {
          const v1 = fromBinary(ReflectionV1.ServerReflectionRequestSchema, toBinary(ReflectionV1alpha.ServerReflectionRequestSchema, request));
          yield fromBinary(ReflectionV1alpha.ServerReflectionResponseSchema, toBinary(ReflectionV1.ServerReflectionResponseSchema, answer(v1)));
        }
      },
    },
  };
}

/** Registers both reflection services on a Connect router. */
export function registerReflection(router: ConnectRouter, options: ReflectionOptions): void {
  const service = createReflectionService(options);
  router.service(ReflectionV1.ServerReflection, service.v1);
  router.service(ReflectionV1alpha.ServerReflection, service.v1alpha);
}

function respond(options: ReflectionOptions, request: V1Request): V1Response {
  const { registry } = options;
  const base = { validHost: request.host, originalRequest: request };
  const asked = request.messageRequest;
  const files = (file: DescFile | undefined, what: string): V1Response =>
    file === undefined
      ? notFound(base, `${what} not found`)
      : create(ReflectionV1.ServerReflectionResponseSchema, {
          ...base,
          messageResponse: {
            case: 'fileDescriptorResponse',
            value: { fileDescriptorProto: withImports(file).map((each) => toBinary(FileDescriptorProtoSchema, each.proto)) },
          },
        });
  switch (asked.case) {
    case 'listServices':
      return create(ReflectionV1.ServerReflectionResponseSchema, {
        ...base,
        messageResponse: { case: 'listServicesResponse', value: { service: options.services().map((name) => ({ name })) } },
      });
    case 'fileByFilename':
      return files(registry.getFile(asked.value), `file ${asked.value}`);
    case 'fileContainingSymbol':
      return files(fileOfSymbol(registry, asked.value), `symbol ${asked.value}`);
    case 'fileContainingExtension': {
      const message = registry.getMessage(asked.value.containingType);
      const extension = message && registry.getExtensionFor(message, asked.value.extensionNumber);
      return files(extension?.file, `extension ${asked.value.extensionNumber} of ${asked.value.containingType}`);
    }
    case 'allExtensionNumbersOfType': {
      const message = registry.getMessage(asked.value);
      if (message === undefined) return notFound(base, `type ${asked.value} not found`);
      const numbers: number[] = [];
      for (const type of registry) if (type.kind === 'extension' && type.extendee.typeName === asked.value) numbers.push(type.number);
      return create(ReflectionV1.ServerReflectionResponseSchema, {
        ...base,
        messageResponse: { case: 'allExtensionNumbersResponse', value: { baseTypeName: asked.value, extensionNumber: numbers } },
      });
    }
    default:
      return create(ReflectionV1.ServerReflectionResponseSchema, {
        ...base,
        messageResponse: { case: 'errorResponse', value: { errorCode: Code.InvalidArgument, errorMessage: 'no request in the message' } },
      });
  }
}

/** The file declaring a type, a service or one of its methods. */
function fileOfSymbol(registry: FileRegistry, symbol: string): DescFile | undefined {
  const type = registry.get(symbol);
  if (type !== undefined) return type.file;
  const dot = symbol.lastIndexOf('.');
  const parent = dot > 0 ? registry.getService(symbol.slice(0, dot)) : undefined;
  return parent?.methods.some((method) => method.name === symbol.slice(dot + 1)) ? parent.file : undefined;
}

/** A file and every file it imports, transitively, each once, the file first. */
function withImports(file: DescFile): DescFile[] {
  const out: DescFile[] = [];
  const seen = new Set<string>();
  const visit = (each: DescFile) => {
    if (seen.has(each.name)) return;
    seen.add(each.name);
    out.push(each);
    for (const dependency of each.dependencies) visit(dependency);
  };
  visit(file);
  return out;
}

function notFound(base: { validHost: string; originalRequest: V1Request }, message: string): V1Response {
  return create(ReflectionV1.ServerReflectionResponseSchema, {
    ...base,
    messageResponse: { case: 'errorResponse', value: { errorCode: Code.NotFound, errorMessage: message } },
  });
}
