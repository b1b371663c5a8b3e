//! Lossless metadata stripping at the container level: JPEG segments and PNG chunks are
//! copied or dropped whole; the coded image data is never touched.
//!
//! Both parsers are bounds-checked on every length and return `Corrupt` on any file that ends
//! early, so they double as a completeness check (the JPEG decoder in use fills a truncated
//! scan with grey instead of failing).

use super::MediaError;

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const APP0: u8 = 0xE0;
const APP14: u8 = 0xEE;
const COM: u8 = 0xFE;

fn corrupt(what: &str) -> MediaError {
    MediaError::Corrupt(format!("JPEG {what}"))
}

/// One JPEG marker segment: its marker byte and the bytes it spans in the file, from its
/// `FF xx` marker through its payload (and, for SOS, through the entropy-coded data after it).
struct Segment {
    marker: u8,
    start: usize,
    end: usize,
}

/// Walks a JPEG from SOI to EOI. Bytes after EOI are ignored; a file without EOI is corrupt.
fn jpeg_segments(bytes: &[u8]) -> Result<Vec<Segment>, MediaError> {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != SOI {
        return Err(corrupt("does not start with SOI"));
    }
    let mut segments = Vec::new();
    let mut pos = 2;
    loop {
        // A marker: one or more 0xFF fill bytes, then the marker code.
        if bytes.get(pos) != Some(&0xFF) {
            return Err(corrupt("is truncated or has a bad marker"));
        }
        let start = pos;
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *bytes.get(pos).ok_or_else(|| corrupt("is truncated"))?;
        pos += 1;
        match marker {
            EOI => return Ok(segments),
            SOI | 0x00 => return Err(corrupt("has a misplaced marker")),
            // Standalone markers (TEM, RSTn) carry no length.
            0x01 | 0xD0..=0xD7 => {}
            _ => {
                let len = bytes
                    .get(pos..pos + 2)
                    .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
                    .ok_or_else(|| corrupt("is truncated"))?;
                if len < 2 || pos + len > bytes.len() {
                    return Err(corrupt("is truncated or has a bad segment length"));
                }
                pos += len;
                if marker == SOS {
                    pos = skip_entropy_data(bytes, pos)?;
                }
            }
        }
        segments.push(Segment {
            marker,
            start,
            end: pos,
        });
    }
}

/// Returns the offset of the first marker after entropy-coded data starting at `pos`
/// (`FF 00` is a stuffed byte, `FF D0..D7` a restart marker: both belong to the data).
fn skip_entropy_data(bytes: &[u8], mut pos: usize) -> Result<usize, MediaError> {
    loop {
        let ff = bytes[pos..]
            .iter()
            .position(|&b| b == 0xFF)
            .ok_or_else(|| corrupt("is truncated inside a scan"))?;
        pos += ff;
        match bytes.get(pos + 1) {
            None => return Err(corrupt("is truncated inside a scan")),
            Some(0x00 | 0xD0..=0xD7) => pos += 2,
            // Fill bytes before a marker: the marker loop skips them.
            Some(_) => return Ok(pos),
        }
    }
}

/// Checks that a JPEG is whole: every segment in bounds and an EOI at the end.
pub(super) fn check_jpeg_complete(bytes: &[u8]) -> Result<(), MediaError> {
    jpeg_segments(bytes).map(|_| ())
}

/// Copies a JPEG without its metadata: APP1..APP15 (EXIF, XMP, ICC profiles, MPF, IPTC,
/// maker data) and COM segments are dropped, and so is anything after EOI (motion-photo
/// videos, vendor trailers). Kept: APP0 only when it is JFIF (rewritten
/// without its embedded thumbnail), APP14 only when it is Adobe's
/// (its colour-transform flag changes how the pixels decode, and it says nothing about the
/// photo), and every segment that codes the image.
pub(super) fn strip_jpeg(bytes: &[u8]) -> Result<Vec<u8>, MediaError> {
    let segments = jpeg_segments(bytes)?;
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&[0xFF, SOI]);
    for s in &segments {
        let body = &bytes[s.start..s.end];
        // Payload after the marker and the two length bytes.
        let payload = body
            .iter()
            .position(|&b| b != 0xFF)
            .and_then(|m| body.get(m + 3..))
            .unwrap_or_default();
        match s.marker {
            // JFIF: identifier, version, density units and values, with the embedded
            // thumbnail (a copy of the uncropped picture) cut out.
            APP0 if payload.len() >= 14 && payload.starts_with(b"JFIF\0") => {
                out.extend_from_slice(&[0xFF, APP0, 0x00, 16]);
                out.extend_from_slice(&payload[..12]);
                out.extend_from_slice(&[0, 0]);
            }
            APP14 if payload.starts_with(b"Adobe") => out.extend_from_slice(body),
            0xE0..=0xEF | COM => {}
            _ => out.extend_from_slice(body),
        }
    }
    out.extend_from_slice(&[0xFF, EOI]);
    Ok(out)
}

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// PNG chunks that describe how to draw the pixels and nothing else; every other ancillary
/// chunk (tEXt, zTXt, iTXt, eXIf, tIME, iCCP, pHYs, APNG frames, private chunks) is dropped.
const PNG_KEEP: [&[u8; 4]; 10] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"cICP",
];

/// Copies a PNG keeping only the chunks in `PNG_KEEP`, each verbatim with its CRC.
/// Anything after IEND is dropped. An animated PNG becomes its still default image.
pub(super) fn strip_png(bytes: &[u8]) -> Result<Vec<u8>, MediaError> {
    let corrupt = |what: &str| MediaError::Corrupt(format!("PNG {what}"));
    if !bytes.starts_with(PNG_SIGNATURE) {
        return Err(corrupt("has no signature"));
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(PNG_SIGNATURE);
    let mut pos = PNG_SIGNATURE.len();
    let mut first = true;
    loop {
        let head = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| corrupt("is truncated"))?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = &head[4..8];
        let end = pos
            .checked_add(12)
            .and_then(|e| e.checked_add(len))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| corrupt("is truncated or has a bad chunk length"))?;
        if first && kind != b"IHDR" {
            return Err(corrupt("does not start with IHDR"));
        }
        first = false;
        if PNG_KEEP.iter().any(|k| k.as_slice() == kind) {
            out.extend_from_slice(&bytes[pos..end]);
        }
        if kind == b"IEND" {
            return Ok(out);
        }
        pos = end;
    }
}

/// The markers of a JPEG's segments, in order (for tests).
#[cfg(test)]
pub(super) fn jpeg_segments_for_tests(bytes: &[u8]) -> Result<Vec<u8>, MediaError> {
    Ok(jpeg_segments(bytes)?.iter().map(|s| s.marker).collect())
}
