/* global document, window */
// The page the browser test serves: a Connect-Web client of ChiefOfStateService, bundled by
// esbuild. It knows the bank types from the descriptor set the test hands it (as a generic
// client would), opens an account through the Connect protocol (JSON, with the command as
// proto3 JSON with @type), reads it back through gRPC-Web (binary), watches it with Subscribe
// (the Connect protocol's streaming JSON), and shows all three.
import { create, createFileRegistry, fromBinary } from '@bufbuild/protobuf';
import { anyPack, anyUnpack, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-web';
import { ChiefOfStateService } from '@chiefofstate/protocol';

async function run() {
  const { cosUrl, token, descriptorSet, entityId } = window.COS_TEST;
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, Uint8Array.from(atob(descriptorSet), (c) => c.charCodeAt(0))));
  const OpenAccount = registry.getMessage('bank.v1.OpenAccount');
  const headers = { authorization: `Bearer ${token}` };
  const connect = createClient(ChiefOfStateService, createConnectTransport({ baseUrl: cosUrl, jsonOptions: { registry } }));
  const grpcWeb = createClient(ChiefOfStateService, createGrpcWebTransport({ baseUrl: cosUrl }));
  const command = anyPack(OpenAccount, create(OpenAccount, { owner: 'browser', initialDepositCents: 4200n }));
  // watched from its first revision: history, then live, whatever comes first
  const watching = new AbortController();
  const watched = [];
  const watch = (async () => {
    for await (const message of connect.subscribe({ entityId, fromRevision: 1n }, { headers, signal: watching.signal })) {
      watched.push({ revision: message.meta.revisionNumber, event: message.event.typeUrl.split('/').pop(), balanceCents: String(anyUnpack(message.resultingState, registry).balanceCents) });
      if (watched.length === 2) return;
    }
  })();
  const opened = await connect.processCommand({ entityId, command }, { headers });
  const account = anyUnpack(opened.state, registry);
  const read = await grpcWeb.getState({ entityId }, { headers });
  const readBack = anyUnpack(read.state, registry);
  await watch;
  watching.abort();
  return {
    watched,
    owner: account.owner,
    balanceCents: String(account.balanceCents),
    revision: opened.meta.revisionNumber,
    readBackBalanceCents: String(readBack.balanceCents),
  };
}

run().then(
  (result) => {
    document.getElementById('state').textContent = JSON.stringify(result);
  },
  (error) => {
    document.getElementById('state').textContent = `error: ${error && error.message}`;
  },
);
