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

/**
 * Trailer of a failed call that COS refused having written nothing, because another replica
 * should take it (the shard changed owner, the replica is stopping, or no owner could be
 * reached) or because it does not trust the replica that forwarded it (UNAUTHENTICATED: a wrong
 * proof, a certificate not in COS_CLUSTER_PEER_NAMES); its value is the error's code. A replica
 * that forwarded the call sends it to the shard's next owner instead of passing the failure on,
 * and answers its caller UNAVAILABLE if none takes it.
 */
export const REFUSED_TRAILER = 'x-cos-refused';
