/**
 * Request header of a ProcessCommand or GetState that one COS replica forwarded to another (the
 * one owning the entity's shard); its value is the forwarding replica's address. The receiver
 * handles such a call itself, whatever it believes about ownership, so a call is forwarded at
 * most once.
 */
export const FORWARDED_BY_HEADER = 'x-cos-forwarded-by';
