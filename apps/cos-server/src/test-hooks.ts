import type { JournalPort } from '@chiefofstate/entity';

/**
 * COS_TEST_KILL_AFTER_COMMIT (tests only): the journal as the entity runtime sees it, except that
 * once an append of `entityId` has committed the process kills itself with SIGKILL, before the
 * reply leaves: the crash between commit and reply that idempotency keys must survive, made
 * deterministic. Without the setting, the journal itself.
 */
export function killAfterCommit<J extends JournalPort>(journal: J, entityId: string | undefined, warn: (message: string) => void): JournalPort {
  if (entityId === undefined) return journal;
  warn(`COS_TEST_KILL_AFTER_COMMIT is set: this process kills itself after committing an append of ${JSON.stringify(entityId)} (tests only)`);
  return {
    append: async (request) => {
      const result = await journal.append(request);
      if (request.entityId === entityId) process.kill(process.pid, 'SIGKILL');
      return result;
    },
    readLatest: (id, options) => journal.readLatest(id, options),
    deleteEventsBefore: (id, revision) => journal.deleteEventsBefore(id, revision),
    readKeys: (id, limit, options) => journal.readKeys(id, limit, options),
    readLatestWithKeys: (id, keyLimit, options) => journal.readLatestWithKeys(id, keyLimit, options),
    findKeys: (id, keys, options) => journal.findKeys(id, keys, options),
  };
}
