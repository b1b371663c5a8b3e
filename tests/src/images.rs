//! Test pictures: JPEGs with EXIF metadata (GPS, camera serial, date, orientation) built by
//! hand, and images of a chosen encoded size.

use image::{ImageFormat, Rgb, RgbImage};
use rand::{Rng, SeedableRng};

pub const SERIAL: &str = "SN-1234567";
pub const DATE: &str = "2026:01:02 03:04:05";

/// A `w`×`h` picture of noise (seeded) with a red block in its stored top-left corner.
pub fn noisy(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut img = RgbImage::from_fn(w, h, |_, _| Rgb([rng.gen(), rng.gen(), rng.gen()]));
    let (bw, bh) = (w * 15 / 100, h * 15 / 100);
    for y in 0..bh {
        for x in 0..bw {
            img.put_pixel(x, y, Rgb([255, 0, 0]));
        }
    }
    img
}

/// Encodes `img` as JPEG at `quality`.
pub fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = vec![];
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    img.write_with_encoder(enc).expect("jpeg encode");
    out
}

/// Encodes `img` as PNG.
pub fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(vec![]);
    img.write_to(&mut out, ImageFormat::Png)
        .expect("png encode");
    out.into_inner()
}

/// A TIFF (little-endian) EXIF block: orientation, date, camera serial in the EXIF IFD, and a
/// GPS IFD with a latitude reference.
fn exif_tiff(orientation: u16) -> Vec<u8> {
    // Layout: header(8) | IFD0 (4 entries) | EXIF IFD (1 entry) | GPS IFD (1 entry) | data
    let ifd0 = 8u32;
    let ifd0_len = 2 + 4 * 12 + 4;
    let exif_ifd = ifd0 + ifd0_len;
    let exif_len = 2 + 12 + 4;
    let gps_ifd = exif_ifd + exif_len;
    let gps_len = 2 + 12 + 4;
    let date_off = gps_ifd + gps_len;
    let date = format!("{DATE}\0");
    let serial_off = date_off + date.len() as u32;
    let serial = format!("{SERIAL}\0");
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&ifd0.to_le_bytes());
    let entry = |t: &mut Vec<u8>, tag: u16, typ: u16, count: u32, value: u32| {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&typ.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value.to_le_bytes());
    };
    t.extend_from_slice(&4u16.to_le_bytes());
    entry(&mut t, 0x0112, 3, 1, orientation as u32); // Orientation, SHORT
    entry(&mut t, 0x0132, 2, date.len() as u32, date_off); // DateTime, ASCII
    entry(&mut t, 0x8769, 4, 1, exif_ifd); // ExifIFD pointer
    entry(&mut t, 0x8825, 4, 1, gps_ifd); // GPS IFD pointer
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(&1u16.to_le_bytes());
    entry(&mut t, 0xA431, 2, serial.len() as u32, serial_off); // BodySerialNumber
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(&1u16.to_le_bytes());
    entry(&mut t, 0x0001, 2, 2, u32::from_le_bytes(*b"N\0\0\0")); // GPSLatitudeRef "N"
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(date.as_bytes());
    t.extend_from_slice(serial.as_bytes());
    t
}

/// Inserts an EXIF APP1 segment (with `orientation`, GPS, serial and date) right after a
/// JPEG's SOI marker.
pub fn with_exif(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "not a JPEG");
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&exif_tiff(orientation));
    let len = (payload.len() + 2) as u16;
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Whether `bytes` contain `needle`.
pub fn contains(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// A JPEG of noise whose encoded size is close to `target` bytes (within about 10%), at most
/// 2048 px on its long side so it is not resized on the way.
pub fn jpeg_of_size(target: usize, seed: u64) -> Vec<u8> {
    // Noise at quality 90 costs roughly two bytes a pixel; the estimate is corrected from the
    // measured size until the file is within 5 % of the target.
    let mut per_px = 2.0_f64;
    let mut out = Vec::new();
    for _ in 0..8 {
        let px = (target as f64 / per_px).max(64.0);
        let w = (px.sqrt() * 1.25).min(2048.0) as u32;
        let h = ((px / w as f64) as u32).clamp(16, 2048);
        out = jpeg(&noisy(w, h, seed), 90);
        let ratio = out.len() as f64 / target as f64;
        if (0.95..=1.05).contains(&ratio) {
            break;
        }
        per_px = out.len() as f64 / (w as f64 * h as f64);
    }
    out
}
