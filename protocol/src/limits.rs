//! Every size limit of the wire and of user input, in one place.

/// Largest text body, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Longest image caption, in bytes of UTF-8 (an image reference and its caption fit a payload).
pub const MAX_CAPTION_BYTES: usize = 4 * 1024;
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
/// Plaintext bytes per blob chunk (the last chunk may be shorter).
pub const BLOB_CHUNK_BYTES: usize = 256 * 1024;
/// Poly1305 tag appended to every sealed blob chunk.
pub const BLOB_TAG_BYTES: usize = 16;
/// Largest sealed chunk on the wire.
pub const MAX_BLOB_CHUNK_WIRE_BYTES: usize = BLOB_CHUNK_BYTES + BLOB_TAG_BYTES;
/// Largest file a node sends as an image, by default (the `--image` limit).
pub const MAX_BLOB_BYTES: usize = 16 * 1024 * 1024;
/// Hard cap: no manifest claiming a larger plaintext is ever accepted, whatever the settings.
pub const MAX_BLOB_HARD_BYTES: u64 = 64 * 1024 * 1024;
/// Most chunks a blob may have (follows from the hard cap).
pub const MAX_BLOB_CHUNKS: usize = (MAX_BLOB_HARD_BYTES as usize) / BLOB_CHUNK_BYTES;
/// Largest encoded blob manifest: size varint, count varint, 32 bytes per chunk, and slack.
pub const MAX_BLOB_MANIFEST_BYTES: usize = MAX_BLOB_CHUNKS * 32 + 32;
/// Longest MIME type in a blob reference, in bytes.
pub const MAX_MIME_BYTES: usize = 64;
/// Largest thumbnail in a blob reference.
pub const MAX_THUMBNAIL_BYTES: usize = 16 * 1024;
/// Largest width or height an image may have (decoders refuse larger).
pub const MAX_IMAGE_DIMENSION: u32 = 16_384;
/// Largest encoded blob reference: id, key, MIME, dimensions, thumbnail, manifest, slack.
pub const MAX_BLOB_REF_BYTES: usize =
    32 + 32 + MAX_MIME_BYTES + MAX_THUMBNAIL_BYTES + MAX_BLOB_MANIFEST_BYTES + 64;

/// The larger of two sizes, in const context.
pub const fn max_usize(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Largest request on `/kith/blob/1.0.0`.
pub const MAX_BLOB_REQUEST_BYTES: usize = 128;
/// Largest response on `/kith/blob/1.0.0` (one sealed chunk and its framing).
pub const MAX_BLOB_RESPONSE_BYTES: usize = MAX_BLOB_CHUNK_WIRE_BYTES + 64;
