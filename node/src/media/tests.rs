//! Tests of image preparation on real images built here: JPEGs with a hand-made EXIF block
//! (orientation, GPS, serial number, date), XMP and a comment; PNGs with text chunks; hostile
//! headers and damaged files.

#![allow(clippy::unwrap_used)]

use super::*;
use image::{Rgb, RgbImage, Rgba, RgbaImage};

const SERIAL: &str = "SN-9F3K2-SECRET";
const DATE: &str = "2023:05:17 14:22:09";
const XMP_NS: &[u8] = b"http://ns.adobe.com/xap";
const RED: Rgb<u8> = Rgb([255, 0, 0]);

/// A w x h picture: a grey gradient with a red block in the stored top-left quarter.
fn picture(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if x < w / 4 && y < h / 4 {
            RED
        } else {
            let g = ((x + y) % 200 + 30) as u8;
            Rgb([g / 2, g, g])
        }
    })
}

fn jpeg_of(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(img.clone())
        .write_with_encoder(JpegEncoder::new_with_quality(&mut out, quality))
        .unwrap();
    out
}

fn png_of(img: DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_with_encoder(PngEncoder::new(&mut out)).unwrap();
    out
}

// --- A minimal little-endian TIFF/EXIF writer -------------------------------------------

const BYTE: u16 = 1;
const ASCII: u16 = 2;
const SHORT: u16 = 3;
const LONG: u16 = 4;
const RATIONAL: u16 = 5;

struct Entry {
    tag: u16,
    kind: u16,
    count: u32,
    value: Vec<u8>,
}

fn ascii(tag: u16, s: &str) -> Entry {
    let mut value = s.as_bytes().to_vec();
    value.push(0);
    Entry {
        tag,
        kind: ASCII,
        count: value.len() as u32,
        value,
    }
}

fn long(tag: u16, v: u32) -> Entry {
    Entry {
        tag,
        kind: LONG,
        count: 1,
        value: v.to_le_bytes().to_vec(),
    }
}

fn rationals(tag: u16, parts: &[(u32, u32)]) -> Entry {
    let value = parts
        .iter()
        .flat_map(|(n, d)| [n.to_le_bytes(), d.to_le_bytes()].concat())
        .collect();
    Entry {
        tag,
        kind: RATIONAL,
        count: parts.len() as u32,
        value,
    }
}

/// Bytes an IFD takes: count, entries, next-IFD offset, then out-of-line values.
fn ifd_len(entries: &[Entry]) -> u32 {
    let data: usize = entries
        .iter()
        .filter(|e| e.value.len() > 4)
        .map(|e| e.value.len().next_multiple_of(2))
        .sum();
    (2 + 12 * entries.len() + 4 + data) as u32
}

/// An IFD placed at offset `at` of the TIFF, its long values right after it.
fn ifd(entries: &[Entry], at: u32) -> Vec<u8> {
    let mut out = (entries.len() as u16).to_le_bytes().to_vec();
    let mut data = Vec::new();
    let data_at = at + 2 + 12 * entries.len() as u32 + 4;
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.kind.to_le_bytes());
        out.extend_from_slice(&e.count.to_le_bytes());
        if e.value.len() <= 4 {
            let mut v = e.value.clone();
            v.resize(4, 0);
            out.extend_from_slice(&v);
        } else {
            out.extend_from_slice(&(data_at + data.len() as u32).to_le_bytes());
            data.extend_from_slice(&e.value);
            if data.len() % 2 == 1 {
                data.push(0);
            }
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// TIFF bytes: IFD0 (orientation, date, pointers), an EXIF IFD (body serial number) and a GPS
/// IFD (52°22'1" N, 4°53'2" E).
fn exif_tiff(orientation: u16) -> Vec<u8> {
    let exif = [ascii(0xA431, SERIAL)];
    let gps = [
        Entry {
            tag: 0x0000,
            kind: BYTE,
            count: 4,
            value: vec![2, 3, 0, 0],
        },
        ascii(0x0001, "N"),
        rationals(0x0002, &[(52, 1), (22, 1), (1, 1)]),
        ascii(0x0003, "E"),
        rationals(0x0004, &[(4, 1), (53, 1), (2, 1)]),
    ];
    let ifd0_len = ifd_len(&[
        Entry {
            tag: 0x0112,
            kind: SHORT,
            count: 1,
            value: orientation.to_le_bytes().to_vec(),
        },
        ascii(0x0132, DATE),
        long(0x8769, 0),
        long(0x8825, 0),
    ]);
    let exif_at = 8 + ifd0_len;
    let gps_at = exif_at + ifd_len(&exif);
    let ifd0 = [
        Entry {
            tag: 0x0112,
            kind: SHORT,
            count: 1,
            value: orientation.to_le_bytes().to_vec(),
        },
        ascii(0x0132, DATE),
        long(0x8769, exif_at),
        long(0x8825, gps_at),
    ];
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend(ifd(&ifd0, 8));
    tiff.extend(ifd(&exif, exif_at));
    tiff.extend(ifd(&gps, gps_at));
    tiff
}

fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0xFF, marker];
    s.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
    s.extend_from_slice(payload);
    s
}

/// `jpeg` with an EXIF APP1, an XMP APP1 and a comment spliced in after SOI.
fn with_metadata(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend(exif_tiff(orientation));
    let mut xmp = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    xmp.extend_from_slice(
        format!("<x:xmpmeta><tiff:Serial>{SERIAL}</tiff:Serial></x:xmpmeta>").as_bytes(),
    );
    let mut out = jpeg[..2].to_vec();
    out.extend(segment(0xE1, &exif));
    out.extend(segment(0xE1, &xmp));
    out.extend(segment(0xFE, format!("taken {DATE}").as_bytes()));
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn assert_no_metadata(bytes: &[u8]) {
    assert!(!contains(bytes, b"Exif\0\0"), "EXIF left");
    assert!(!contains(bytes, XMP_NS), "XMP left");
    assert!(!contains(bytes, SERIAL.as_bytes()), "serial number left");
    assert!(!contains(bytes, DATE.as_bytes()), "date left");
    if bytes.starts_with(&[0xFF, 0xD8]) {
        for s in strip::jpeg_segments_for_tests(bytes).unwrap() {
            assert!(
                !matches!(s, 0xE1..=0xED | 0xEF | 0xFE),
                "metadata segment {s:#x} left"
            );
        }
    }
}

fn is_red(p: Rgb<u8>) -> bool {
    p[0] > 180 && p[1] < 90 && p[2] < 90
}

fn check_thumbnail(p: &PreparedImage) {
    assert!(p.thumbnail.len() <= MAX_THUMBNAIL_BYTES);
    let t = image::load_from_memory(&p.thumbnail).unwrap();
    assert!(t.width().max(t.height()) <= THUMBNAIL_DIMENSION);
    assert_eq!(
        p.width >= p.height,
        t.width() >= t.height(),
        "thumbnail upright"
    );
    assert_no_metadata(&p.thumbnail);
}

#[test]
fn the_test_photo_carries_what_it_should() {
    let photo = with_metadata(&jpeg_of(&picture(64, 48), 90), 6);
    let mut d = ImageReader::new(Cursor::new(&photo))
        .with_guessed_format()
        .unwrap()
        .into_decoder()
        .unwrap();
    assert_eq!(d.orientation().unwrap(), Orientation::Rotate90);
    let exif = d.exif_metadata().unwrap().unwrap();
    assert!(contains(&exif, SERIAL.as_bytes()) && contains(&exif, DATE.as_bytes()));
    assert!(contains(&photo, XMP_NS));
}

#[test]
fn orientation_6_is_applied_and_metadata_stripped() {
    let photo = with_metadata(&jpeg_of(&picture(640, 480), 90), 6);
    let p = prepare_image(&photo, &PrepareOptions::default()).unwrap();
    assert_eq!(p.mime, "image/jpeg");
    assert_eq!((p.width, p.height), (480, 640), "width and height swapped");
    let out = image::load_from_memory(&p.bytes).unwrap().to_rgb8();
    assert_eq!(out.dimensions(), (480, 640));
    // The block stored top-left shows top-right once upright.
    assert!(is_red(*out.get_pixel(480 - 10, 10)), "top-right not red");
    assert!(!is_red(*out.get_pixel(10, 10)), "top-left red");
    assert_no_metadata(&p.bytes);
    check_thumbnail(&p);
}

#[test]
fn original_with_orientation_is_reencoded_full_size_and_upright() {
    let photo = with_metadata(&jpeg_of(&picture(640, 480), 90), 6);
    let opts = PrepareOptions {
        original: true,
        max_dimension: 100,
        ..PrepareOptions::default()
    };
    let p = prepare_image(&photo, &opts).unwrap();
    assert_eq!(
        (p.mime.as_str(), p.width, p.height),
        ("image/jpeg", 480, 640)
    );
    let out = image::load_from_memory(&p.bytes).unwrap().to_rgb8();
    assert!(is_red(*out.get_pixel(470, 10)));
    assert_no_metadata(&p.bytes);
    check_thumbnail(&p);
}

#[test]
fn original_upright_jpeg_is_stripped_losslessly() {
    let clean = jpeg_of(&picture(300, 200), 90);
    let mut photo = with_metadata(&clean, 1);
    photo.extend_from_slice(format!("trailer {SERIAL}").as_bytes());
    let opts = PrepareOptions {
        original: true,
        ..PrepareOptions::default()
    };
    let p = prepare_image(&photo, &opts).unwrap();
    assert_eq!(
        (p.mime.as_str(), p.width, p.height),
        ("image/jpeg", 300, 200)
    );
    assert_no_metadata(&p.bytes);
    // Only the metadata went: the coded image is byte for byte the encoder's.
    assert_eq!(p.bytes, clean);
}

#[test]
fn large_images_are_downscaled_and_originals_keep_their_size() {
    let big = jpeg_of(&picture(4000, 3000), 80);
    let p = prepare_image(&big, &PrepareOptions::default()).unwrap();
    assert_eq!((p.width, p.height), (2048, 1536));
    let out = image::load_from_memory(&p.bytes).unwrap();
    assert_eq!((out.width(), out.height()), (2048, 1536));
    assert!(is_red(out.to_rgb8().get_pixel(20, 20).to_owned()));
    check_thumbnail(&p);

    let opts = PrepareOptions {
        original: true,
        ..PrepareOptions::default()
    };
    let o = prepare_image(&big, &opts).unwrap();
    assert_eq!((o.width, o.height), (4000, 3000));
    assert_eq!(o.bytes, big);
}

#[test]
fn fit_keeps_the_aspect_ratio() {
    assert_eq!(fit(4000, 3000, 2048), (2048, 1536));
    assert_eq!(fit(3000, 4000, 2048), (1536, 2048));
    assert_eq!(fit(100, 50, 2048), (100, 50));
    assert_eq!(fit(16384, 1, 96), (96, 1));
}

/// A PNG chunk with its CRC.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    let mut crc = 0xFFFF_FFFFu32;
    for &b in kind.iter().chain(data) {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    c.extend_from_slice(&(!crc).to_be_bytes());
    c
}

/// `png` with text, time and EXIF chunks after IHDR (8 + 25 bytes in).
fn png_with_metadata(png: &[u8], orientation: u16) -> Vec<u8> {
    let mut out = png[..33].to_vec();
    out.extend(png_chunk(b"tEXt", format!("Serial\0{SERIAL}").as_bytes()));
    out.extend(png_chunk(b"tIME", &[7, 231, 5, 17, 14, 22, 9]));
    out.extend(png_chunk(
        b"iTXt",
        format!("Date\0\0\0\0\0{DATE}").as_bytes(),
    ));
    out.extend(png_chunk(b"eXIf", &exif_tiff(orientation)));
    out.extend_from_slice(&png[33..]);
    out
}

#[test]
fn pngs_keep_transparency_and_lose_their_text() {
    let rgba = RgbaImage::from_fn(120, 80, |x, _| {
        Rgba([255, 0, 0, if x < 60 { 255 } else { 0 }])
    });
    let png = png_with_metadata(&png_of(DynamicImage::ImageRgba8(rgba.clone())), 1);
    let p = prepare_image(&png, &PrepareOptions::default()).unwrap();
    assert_eq!((p.mime.as_str(), p.width, p.height), ("image/png", 120, 80));
    assert_no_metadata(&p.bytes);
    check_thumbnail(&p);

    // Lossless original: same pixels, no ancillary chunks.
    let opts = PrepareOptions {
        original: true,
        ..PrepareOptions::default()
    };
    let o = prepare_image(&png, &opts).unwrap();
    assert_eq!(o.mime, "image/png");
    assert_no_metadata(&o.bytes);
    assert_eq!(image::load_from_memory(&o.bytes).unwrap().to_rgba8(), rgba);

    // Opaque PNGs become JPEG; an EXIF orientation in a PNG is applied too.
    let opaque = png_with_metadata(&png_of(DynamicImage::ImageRgb8(picture(120, 80))), 6);
    let p = prepare_image(&opaque, &PrepareOptions::default()).unwrap();
    assert_eq!(
        (p.mime.as_str(), p.width, p.height),
        ("image/jpeg", 80, 120)
    );
    assert_no_metadata(&p.bytes);
    let o = prepare_image(&opaque, &opts).unwrap();
    assert_eq!((o.mime.as_str(), o.width, o.height), ("image/png", 80, 120));
    assert_no_metadata(&o.bytes);
}

#[test]
fn gif_and_webp_are_accepted() {
    let mut gif = Vec::new();
    DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(picture(40, 30)).to_rgba8())
        .write_to(&mut Cursor::new(&mut gif), ImageFormat::Gif)
        .unwrap();
    let p = prepare_image(&gif, &PrepareOptions::default()).unwrap();
    assert_eq!((p.mime.as_str(), p.width, p.height), ("image/png", 40, 30));

    let mut webp = Vec::new();
    DynamicImage::ImageRgb8(picture(50, 20))
        .write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(&mut webp))
        .unwrap();
    let p = prepare_image(&webp, &PrepareOptions::default()).unwrap();
    assert_eq!((p.mime.as_str(), p.width, p.height), ("image/jpeg", 50, 20));
    check_thumbnail(&p);
}

#[test]
fn not_images_are_refused() {
    for bytes in [
        &b""[..],
        b"hello, this is text",
        b"BM\x3e\0\0\0\0\0\0\0\x3e\0\0\0\x28\0\0\0",
        b"%PDF-1.7\n",
    ] {
        assert_eq!(
            prepare_image(bytes, &PrepareOptions::default()),
            Err(MediaError::NotAnImage)
        );
    }
}

#[test]
fn files_over_the_limit_are_refused_before_decoding() {
    let opts = PrepareOptions {
        max_file_bytes: 1000,
        ..PrepareOptions::default()
    };
    let big = vec![0u8; 1001];
    assert!(matches!(
        prepare_image(&big, &opts),
        Err(MediaError::FileTooLarge {
            got: 1001,
            limit: 1000
        })
    ));
}

#[test]
fn truncated_jpegs_are_corrupt() {
    let photo = with_metadata(&jpeg_of(&picture(200, 150), 90), 6);
    for cut in [photo.len() / 2, photo.len() - 2, photo.len() - 1, 40, 3] {
        match prepare(&photo[..cut], &PrepareOptions::default()) {
            Err(MediaError::Corrupt(_)) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn huge_claimed_dimensions_are_refused() {
    // A PNG whose header claims 100000 x 100000 pixels.
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(png_chunk(b"IEND", &[]));
    assert!(matches!(
        prepare_image(&png, &PrepareOptions::default()),
        Err(MediaError::TooLarge(_))
    ));

    // A JPEG whose frame header claims 60000 x 60000.
    let mut jpeg = jpeg_of(&picture(16, 16), 90);
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    assert!(matches!(
        prepare_image(&jpeg, &PrepareOptions::default()),
        Err(MediaError::TooLarge(_))
    ));

    // A GIF whose logical screen claims 65535 x 65535.
    let mut gif = Vec::new();
    DynamicImage::ImageRgb8(picture(8, 8))
        .write_to(&mut Cursor::new(&mut gif), ImageFormat::Gif)
        .unwrap();
    gif[6..10].copy_from_slice(&[0xFF; 4]);
    assert!(prepare_image(&gif, &PrepareOptions::default()).is_err());
}

#[test]
fn noisy_photos_still_get_a_small_thumbnail() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise = RgbImage::from_fn(1200, 900, |_, _| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Rgb([x as u8, (x >> 8) as u8, (x >> 16) as u8])
    });
    let p = prepare_image(&jpeg_of(&noise, 95), &PrepareOptions::default()).unwrap();
    check_thumbnail(&p);
}

/// Damaged files of every format: flipped bytes and every kind of cut. Calls the inner
/// `prepare`, so a panic in a decoder fails the test instead of being caught.
#[test]
fn damaged_files_never_panic() {
    let small = picture(24, 16);
    let mut gif = Vec::new();
    DynamicImage::ImageRgb8(small.clone())
        .write_to(&mut Cursor::new(&mut gif), ImageFormat::Gif)
        .unwrap();
    let mut webp = Vec::new();
    DynamicImage::ImageRgb8(small.clone())
        .write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(&mut webp))
        .unwrap();
    let inputs = [
        with_metadata(&jpeg_of(&small, 90), 6),
        png_with_metadata(&png_of(DynamicImage::ImageRgb8(small)), 3),
        gif,
        webp,
    ];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for original in [false, true] {
        let opts = PrepareOptions {
            original,
            ..PrepareOptions::default()
        };
        for input in &inputs {
            for cut in (0..input.len()).step_by(7) {
                let _ = prepare(&input[..cut], &opts);
            }
            for _ in 0..150 {
                let mut bad = input.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % bad.len();
                    bad[i] = next() as u8;
                }
                let _ = prepare(&bad, &opts);
            }
        }
    }
}
