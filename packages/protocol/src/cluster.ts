/**
 * Request header of a ProcessCommand or GetState that one COS replica forwarded to another (the
 * one owning the entity's shard); its value is the forwarding replica's address. It counts only
 * with a valid FORWARDED_PROOF_HEADER; a receiver that no longer owns the shard forwards the call
 * once more at most.
 */
export const FORWARDED_BY_HEADER = 'x-cos-forwarded-by';

/**
 * Request header proving that a call marked with FORWARDED_BY_HEADER comes from a COS replica:
 * an HMAC with the cluster secret over the mark, the method, the entity id and the time (see
 * @chiefofstate/cluster). A mark without a valid proof is refused (UNAUTHENTICATED).
 */
export const FORWARDED_PROOF_HEADER = 'x-cos-forwarded-proof';
