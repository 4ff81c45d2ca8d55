import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { ConfigError } from '@chiefofstate/core';
import { describe, expect, it } from 'vitest';
import { readTypeRegistry } from './front-ends.js';
import { load, problemsOf } from './test-support/load.js';

const dir = mkdtempSync(join(tmpdir(), 'cos-config-types-'));
const good = join(dir, 'types.binpb');
writeFileSync(
  good,
  toBinary(
    FileDescriptorSetSchema,
    create(FileDescriptorSetSchema, {
      file: [{ name: 'shop/v1/cart.proto', package: 'shop.v1', syntax: 'proto3', messageType: [{ name: 'Cart' }] }],
    }),
  ),
);
const broken = join(dir, 'broken.binpb');
writeFileSync(broken, 'not a descriptor set\n');

describe('front ends and types', () => {
  it('runs the gRPC front end alone by default, with no CORS and no extra types', () => {
    expect(load({}).config.frontEnds).toEqual({ protocol: 'grpc', http: undefined, corsAllowedOrigins: [], descriptorSetFiles: [] });
  });

  it('turns the HTTP front end on, on COS_ADDRESS and 9001 unless told otherwise', () => {
    expect(load({ COS_SERVER_PROTOCOL: 'BOTH', COS_ADDRESS: '127.0.0.1' }).config.frontEnds.http).toEqual({ address: '127.0.0.1', port: 9001 });
    expect(load({ COS_SERVER_PROTOCOL: 'http', COS_HTTP_ADDRESS: '::', COS_HTTP_PORT: '8080' }).config.frontEnds).toMatchObject({
      protocol: 'http',
      http: { address: '::', port: 8080 },
    });
  });

  it('says what is wrong with the front-end settings', () => {
    expect(problemsOf({ COS_SERVER_PROTOCOL: 'rest' })).toEqual(['COS_SERVER_PROTOCOL="rest": expected grpc, http or both']);
    expect(problemsOf({ COS_SERVER_PROTOCOL: 'both', COS_HTTP_PORT: '9000' })).toEqual([
      'COS_HTTP_PORT="9000": expected a port other than COS_PORT (9000)',
    ]);
    expect(problemsOf({ COS_CORS_ALLOWED_ORIGINS: 'https://app.example.com/path' })[0]).toMatch(
      /^COS_CORS_ALLOWED_ORIGINS="https:\/\/app.example.com\/path": expected comma-separated origins/,
    );
    expect(load({ COS_HTTP_PORT: '9001' }).warnings).toContain('COS_HTTP_PORT is ignored: COS_SERVER_PROTOCOL is grpc, so the HTTP front end is off');
    expect(load({ COS_CORS_ALLOWED_ORIGINS: 'https://a.example, http://localhost:5173' }).config.frontEnds.corsAllowedOrigins).toEqual([
      'https://a.example',
      'http://localhost:5173',
    ]);
  });

  it('reads the descriptor sets at load, relative to the working directory, naming a missing or broken file', () => {
    expect(load({ COS_PROTO_DESCRIPTOR_SET: 'types.binpb' }, dir).config.frontEnds.descriptorSetFiles).toEqual([good]);
    const problems = problemsOf({ COS_PROTO_DESCRIPTOR_SET: `types.binpb, broken.binpb,missing.binpb` }, dir);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^COS_PROTO_DESCRIPTOR_SET: .*missing\.binpb cannot be read \(ENOENT\): expected a file written by buf build/);
    expect(problemsOf({ COS_PROTO_DESCRIPTOR_SET: broken })[0]).toMatch(/^COS_PROTO_DESCRIPTOR_SET: .*broken\.binpb is not a FileDescriptorSet/);
  });

  it('turns the files into the registry of types COS knows', () => {
    const registry = readTypeRegistry([good]);
    expect(registry.getMessage('shop.v1.Cart')).toBeDefined();
    expect(registry.getMessage('chief_of_state.v1.MetaData')).toBeDefined();
    expect(() => readTypeRegistry([broken])).toThrow(ConfigError);
  });
});
