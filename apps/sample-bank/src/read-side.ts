import { anyUnpack, timestampDate } from '@bufbuild/protobuf/wkt';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { HandleReadSideRequest, ReadSideHandlerService } from '@chiefofstate/protocol';
import type { Logger } from '@chiefofstate/core';
import type { BalanceStore } from './balance-store.js';
import { AccountStatus, BankAccountSchema } from './gen/bank/v1/bank_pb.js';

/**
 * The sample read side: COS calls HandleReadSide for every persisted event, in order per entity,
 * at least once, with the BankAccount the event produced. Keeping a balance table therefore
 * needs no folding: upsert the state, guarded by the revision so re-deliveries change nothing.
 */

export interface BankReadSideHandlerOptions {
  readonly store: BalanceStore;
  /** a pino logger fits */
  readonly logger?: Logger;
}

/** The ReadSideHandlerService implementation, ready for `router.service(ReadSideHandlerService, ...)`. */
export function createBankReadSideHandler(
  options: BankReadSideHandlerOptions,
): ServiceImpl<typeof ReadSideHandlerService> {
  const { store, logger } = options;
  return {
    async handleReadSide(request: HandleReadSideRequest, context: HandlerContext) {
      // meta.entity_id carries the id exactly; the header is percent-encoded when not ASCII.
      const entityId = request.meta?.entityId || context.requestHeader.get('x-cos-entity-id') || '';
      // the shard the event came through, worth logging when following one stream
      const eventTag = context.requestHeader.get('x-cos-event-tag') ?? '';
      const revision = BigInt(request.meta?.revisionNumber ?? 0);
      const account = request.state?.typeUrl === `type.googleapis.com/${BankAccountSchema.typeName}`
        ? anyUnpack(request.state, BankAccountSchema)
        : undefined;
      if (account === undefined || revision <= 0n) {
        // Not something this read side can apply; `false` makes COS apply its failure policy
        // (retry, then stop or skip), which surfaces the problem instead of hiding it.
        logger?.warn(
          { entityId, revision: String(revision), stateType: request.state?.typeUrl ?? '', readSideId: request.readSideId },
          'not a bank account state with a revision; refusing',
        );
        return { successful: false };
      }
      const balance = {
        accountId: account.accountId || entityId,
        owner: account.owner,
        balanceCents: account.balanceCents,
        status: AccountStatus[account.status] ?? String(account.status),
        revision,
        updatedAt: request.meta?.revisionDate ? timestampDate(request.meta.revisionDate) : new Date(),
      };
      let applied: boolean;
      try {
        applied = await store.apply(balance);
      } catch (error) {
        // A storage error is transient as far as we know: answer false and let COS retry.
        logger?.warn({ entityId, revision: String(revision), err: error }, 'could not store the balance');
        return { successful: false };
      }
      if (applied) {
        logger?.info(
          {
            accountId: balance.accountId,
            balanceCents: String(balance.balanceCents),
            status: balance.status,
            revision: String(revision),
            eventTag,
          },
          'balance applied',
        );
      } else {
        logger?.debug({ accountId: balance.accountId, revision: String(revision) }, 'already applied; skipped');
      }
      return { successful: true };
    },
  };
}
