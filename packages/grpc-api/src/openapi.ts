import type { JsonObject } from '@bufbuild/protobuf';

const ANY_DESCRIPTION =
  'A google.protobuf.Any: the base64 (standard alphabet) of the serialized Any, which carries its type URL and value. ' +
  'With ?any=json, an Any of a type chief-of-state knows (COS_PROTO_DESCRIPTOR_SET, the well-known types) is written as proto3 JSON ' +
  '{"@type": "type.googleapis.com/...", ...fields} instead. Requests accept both forms.';

const any = { $ref: '#/components/schemas/Any' };

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

const ERRORS = {
  '400': errorResponse('INVALID_ARGUMENT (an empty or too long entity id, a body that is not the request, a rejected type) or OUT_OF_RANGE'),
  '401': errorResponse('UNAUTHENTICATED: no or an unknown credential (COS_AUTH_*)'),
  '403': errorResponse('PERMISSION_DENIED: a credential not accepted here'),
  '404': errorResponse('NOT_FOUND: the entity has no event yet (GetState), or the write handler said so'),
  '409': errorResponse('ABORTED or ALREADY_EXISTS'),
  '412': errorResponse('FAILED_PRECONDITION: x-cos-expected-revision did not match (detail google.rpc.ErrorInfo REVISION_MISMATCH), or the write handler refused the command'),
  '429': errorResponse('RESOURCE_EXHAUSTED: too large, or chief-of-state is overloaded; retry later'),
  '500': errorResponse('INTERNAL or UNKNOWN: look the error id up in the chief-of-state log'),
  '501': errorResponse('UNIMPLEMENTED'),
  '503': errorResponse('UNAVAILABLE: the write handler or the store cannot be reached, or chief-of-state is starting or stopping; retry'),
  '504': errorResponse('DEADLINE_EXCEEDED: the command took longer than COS_COMMAND_HANDLER_TIMEOUT'),
};

const entityId = {
  name: 'entityId',
  in: 'path',
  required: true,
  description: 'the entity id (percent-encoded); it wins over entity_id in the body',
  schema: { type: 'string', minLength: 1, maxLength: 255 },
};

const anyFormat = {
  name: 'any',
  in: 'query',
  required: false,
  description: 'json: Anys of known types as proto3 JSON with @type; default: every Any as base64 (the upstream shape)',
  schema: { type: 'string', enum: ['json', 'base64'] },
};

const header = (name: string, description: string) => ({ name, in: 'header', required: false, description, schema: { type: 'string' } });

const stateResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/StateResponse' } } },
});

/**
 * The OpenAPI 3.1 document of the HTTP/JSON front end, served at GET /openapi.json and committed
 * as docs/openapi.json (a test keeps them equal).
 */
export function httpOpenApiDocument(): JsonObject {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Chief-of-State HTTP/JSON front end',
      version: '1',
      description:
        "The upstream server's HTTP front end (COS_SERVER_PROTOCOL=http or both, on COS_HTTP_PORT): ChiefOfStateService's " +
        'ProcessCommand and GetState as JSON over HTTP/1.1 or HTTP/2. Field names are snake_case; every Any is the base64 of ' +
        'the serialized Any unless ?any=json. Failures answer the HTTP status of their gRPC code, with the code, message and ' +
        'details in the body. Request headers are offered to COS_WRITE_SIDE_PROPAGATED_HEADERS and COS_WRITE_PERSISTED_HEADERS ' +
        'as gRPC metadata is; with COS_AUTH_* set, send Authorization: Bearer <token> (or a client certificate over mTLS).',
    },
    paths: {
      '/v1/commands/{entityId}/process': {
        post: {
          operationId: 'processCommand',
          summary: 'Hands a command to the write handler; replies with the entity state after the events it produced',
          parameters: [
            entityId,
            anyFormat,
            header('x-cos-idempotency-key', 'retry-safe commands: a later call with the same key gets the first outcome (1..128 bytes)'),
            header('x-cos-expected-revision', 'run only if the entity is at this revision (0: only if it has no event yet)'),
            header('authorization', 'Bearer <token>, when caller authentication is on'),
          ],
          requestBody: {
            required: true,
            content: { 'application/json': { schema: { $ref: '#/components/schemas/ProcessCommandRequest' } } },
          },
          responses: { '200': stateResponse('the state after the command, and its meta'), ...ERRORS },
        },
      },
      '/v1/entities/{entityId}/state': {
        get: {
          operationId: 'getState',
          summary: "The entity's latest state and meta; the write handler is not called",
          parameters: [entityId, anyFormat, header('authorization', 'Bearer <token>, when caller authentication is on')],
          responses: { '200': stateResponse('the latest state and its meta'), ...ERRORS },
        },
      },
      '/openapi.json': {
        get: {
          operationId: 'openApi',
          summary: 'This document',
          responses: { '200': { description: 'the OpenAPI document', content: { 'application/json': {} } } },
        },
      },
    },
    components: {
      schemas: {
        Any: {
          description: ANY_DESCRIPTION,
          oneOf: [
            { type: 'string', contentEncoding: 'base64' },
            { type: 'object', properties: { '@type': { type: 'string' } }, required: ['@type'], additionalProperties: true },
          ],
        },
        ProcessCommandRequest: {
          type: 'object',
          properties: {
            entity_id: { type: 'string', description: 'optional; the path id wins' },
            command: { ...any, description: 'the command for the write handler' },
          },
          required: ['command'],
        },
        StateResponse: {
          type: 'object',
          properties: { state: { ...any, description: 'the entity state' }, meta: { $ref: '#/components/schemas/MetaData' } },
          required: ['state', 'meta'],
        },
        MetaData: {
          type: 'object',
          properties: {
            entity_id: { type: 'string' },
            revision_number: { type: 'integer', minimum: 0, description: 'the revision of the latest event' },
            revision_date: { type: 'string', format: 'date-time', description: 'when it was written (RFC 3339, UTC)' },
            data: { type: 'object', additionalProperties: any },
            headers: { type: 'array', items: { $ref: '#/components/schemas/Header' }, description: 'the persisted request headers' },
          },
        },
        Header: {
          type: 'object',
          properties: {
            key: { type: 'string' },
            string_value: { type: 'string' },
            bytes_value: { type: 'string', contentEncoding: 'base64', description: 'for keys ending in -bin' },
          },
          required: ['key'],
        },
        Error: {
          type: 'object',
          properties: {
            code: { type: 'integer', description: 'the gRPC status code (google.rpc.Status.code)' },
            status: { type: 'string', description: 'its name: INVALID_ARGUMENT, NOT_FOUND, ...' },
            message: { type: 'string' },
            details: {
              type: 'array',
              items: any,
              description: 'google.rpc.Status details: google.rpc.ErrorInfo decoded, types chief-of-state knows as JSON, others base64',
            },
            error: { type: 'string', description: "the message again, where the upstream server's clients read it" },
          },
          required: ['code', 'status', 'message', 'details', 'error'],
        },
      },
    },
  };
}
