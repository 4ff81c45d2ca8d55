import { fileURLToPath } from 'node:url';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ChiefOfStateService, Health, ReflectionV1, ReflectionV1alpha, createTypeRegistry } from '@chiefofstate/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHealthStatus } from './health-service.js';
import { startGrpcServer, type GrpcServer } from './grpc-server.js';
import { registerReflection } from './reflection-service.js';

const PROTO_ROOT = fileURLToPath(new URL('../../../proto', import.meta.url));

interface ReflectionResponse {
  listServicesResponse?: { service: Array<{ name: string }> };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

/** A stock grpc-js client of the reflection service, from the .proto (not COS's generated code). */
function reflectionClient(version: 'v1' | 'v1alpha', address: string) {
  const definition = loadSync(`grpc/reflection/${version}/reflection.proto`, { includeDirs: [PROTO_ROOT], oneofs: true });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: Record<string, { ServerReflection: grpc.ServiceClientConstructor }> };
  };
  const Client = loaded.grpc.reflection[version]!.ServerReflection;
  const client = new Client(address, grpc.credentials.createInsecure());
  return {
    /** one stream, each request answered in turn */
    async ask(requests: object[]): Promise<ReflectionResponse[]> {
      const call = client['serverReflectionInfo']!() as grpc.ClientDuplexStream<object, ReflectionResponse>;
      const answers: ReflectionResponse[] = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on('data', (response: ReflectionResponse) => answers.push(response));
        call.on('end', resolve);
        call.on('error', reject);
      });
      for (const request of requests) call.write(request);
      call.end();
      await done;
      return answers;
    },
    close: () => client.close(),
  };
}

describe('server reflection', () => {
  let server: GrpcServer;
  beforeAll(async () => {
    const served = [ChiefOfStateService.typeName, Health.typeName, ReflectionV1.ServerReflection.typeName, ReflectionV1alpha.ServerReflection.typeName];
    server = await startGrpcServer({
      host: '127.0.0.1',
      port: 0,
      maxMessageBytes: 65_536,
      routes: (router) => {
        router.service(Health, createHealthStatus({ services: [] }).service);
        registerReflection(router, { registry: createTypeRegistry(), services: () => served });
      },
    });
  });
  afterAll(() => server.close(100));

  it.each(['v1', 'v1alpha'] as const)('lists the services and describes their files, with imports, over %s', async (version) => {
    const client = reflectionClient(version, `127.0.0.1:${server.port}`);
    try {
      const [list, service, method, missing, byName] = await client.ask([
        { listServices: '' },
        { fileContainingSymbol: 'chief_of_state.v1.ChiefOfStateService' },
        { fileContainingSymbol: 'chief_of_state.v1.ChiefOfStateService.ProcessCommand' },
        { fileContainingSymbol: 'no.such.Type' },
        { fileByFilename: 'chief_of_state/v1/common.proto' },
      ]);
      expect(list!.listServicesResponse!.service.map((s) => s.name)).toEqual([
        'chief_of_state.v1.ChiefOfStateService',
        'grpc.health.v1.Health',
        'grpc.reflection.v1.ServerReflection',
        'grpc.reflection.v1alpha.ServerReflection',
      ]);
      const names = (response: ReflectionResponse | undefined) =>
        response!.fileDescriptorResponse!.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
      expect(names(service)[0]).toBe('chief_of_state/v1/service.proto');
      expect(names(service)).toEqual(expect.arrayContaining(['chief_of_state/v1/common.proto', 'google/protobuf/any.proto']));
      const serviceFile = fromBinary(FileDescriptorProtoSchema, service!.fileDescriptorResponse!.fileDescriptorProto[0]!);
      expect(serviceFile.service[0]!.method.map((m) => m.name)).toContain('GetState');
      expect(names(method)[0]).toBe('chief_of_state/v1/service.proto');
      expect(missing!.errorResponse).toMatchObject({ errorCode: 5 });
      expect(names(byName)[0]).toBe('chief_of_state/v1/common.proto');
    } finally {
      client.close();
    }
  });
});
