//! Every size limit of the wire and of user input, in one place.

/// Largest text body, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Largest encoded inner payload (signed, before sealing). Text plus headroom for headers.
pub const MAX_PAYLOAD_BYTES: usize = MAX_TEXT_BYTES + 16 * 1024;
/// Largest encoded envelope: payload plus header, tag and padding.
pub const MAX_ENVELOPE_BYTES: usize = MAX_PAYLOAD_BYTES + 1024;
/// Largest frame on `/kith/dm/1.0.0` (a request is one envelope).
pub const MAX_DM_FRAME_BYTES: usize = MAX_ENVELOPE_BYTES;
/// Largest response on `/kith/dm/1.0.0`.
pub const MAX_DM_RESPONSE_BYTES: usize = 1024;
/// Largest signed peer record.
pub const MAX_RECORD_BYTES: usize = 4 * 1024;
/// Most addresses a record or card may list.
pub const MAX_ADDRS: usize = 16;
/// Most relays a record or card may list.
pub const MAX_RELAYS: usize = 8;
/// Largest single multiaddr, as a string.
pub const MAX_ADDR_LEN: usize = 256;
/// Most message ids in one receipt.
pub const MAX_RECEIPT_IDS: usize = 512;
/// Longest contact or display name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Largest contact card string.
pub const MAX_CARD_CHARS: usize = 4 * 1024;
/// How far into the future a peer record's expiry may lie.
pub const MAX_RECORD_LIFETIME_MS: u64 = 48 * 3600 * 1000;
