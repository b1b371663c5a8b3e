//! Preparing an image for sending: check, decode under limits, apply the EXIF orientation,
//! strip every piece of metadata, downscale, re-encode, and make a thumbnail.
//!
//! Accepted inputs are JPEG, PNG, WebP and GIF, recognised by their content, never by a file
//! name. Decoding runs under [`image::Limits`]: at most [`MAX_IMAGE_DIMENSION`] pixels a side
//! and [`MAX_DECODE_BYTES`] of decoded pixels, so a small file that claims a huge picture is
//! refused before anything is allocated.
//!
//! What comes out:
//!
//! | mode | input | output |
//! |---|---|---|
//! | default | any, with visible transparency | PNG, longest side ≤ `max_dimension` |
//! | default | GIF | PNG of the first frame (animation is dropped) |
//! | default | anything else | JPEG at `jpeg_quality`, longest side ≤ `max_dimension` |
//! | original | JPEG, orientation 1 | the same JPEG, metadata segments removed losslessly |
//! | original | JPEG, other orientation | JPEG at quality 95, full size, upright |
//! | original | PNG, orientation 1 | the same PNG, ancillary chunks removed losslessly |
//! | original | PNG rotated, WebP, GIF | PNG (lossless), full size, upright; GIF: first frame |
//!
//! Re-encoded output carries no metadata at all: the `image` encoders write only the pixels
//! (plus a bare JFIF APP0 header for JPEG). ICC colour profiles are dropped too, so a
//! wide-gamut photo is shown as sRGB. The lossless paths are in `media/strip.rs`.
//! In every case the orientation is applied to the pixels, so width and height are those of
//! the upright picture.

mod strip;
#[cfg(test)]
mod tests;

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};
use kith_protocol::limits::{MAX_BLOB_BYTES, MAX_IMAGE_DIMENSION, MAX_THUMBNAIL_BYTES};

/// Most bytes of decoded pixels an image may need (a guard against decompression bombs).
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;
/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_DIMENSION: u32 = 96;
/// JPEG quality a thumbnail starts at; lowered until it fits [`MAX_THUMBNAIL_BYTES`].
pub const THUMBNAIL_QUALITY: u8 = 50;
/// JPEG quality of an original that must be re-encoded to apply its orientation.
pub const ORIGINAL_JPEG_QUALITY: u8 = 95;

/// Why an image cannot be sent. The text names the problem.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaError {
    /// The bytes are not a JPEG, PNG, WebP or GIF image.
    #[error("not an image: kith sends JPEG, PNG, WebP and GIF files")]
    NotAnImage,
    /// The file is over the size limit.
    #[error("image file too large: {got} bytes, limit {limit}")]
    FileTooLarge { got: usize, limit: usize },
    /// The picture is too large to decode (dimensions or pixel memory), or its result would
    /// be over the blob limit.
    #[error("image too large: {0}")]
    TooLarge(String),
    /// The file is damaged or truncated.
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
    /// Encoding the result failed.
    #[error("could not encode the image: {0}")]
    Encode(String),
}

/// How to prepare an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrepareOptions {
    /// Send the picture at full size without lossy recompression (metadata is still stripped
    /// and the orientation still applied).
    pub original: bool,
    /// Longest side of the sent picture in default mode, in pixels (clamped to
    /// 1..=[`MAX_IMAGE_DIMENSION`]).
    pub max_dimension: u32,
    /// JPEG quality in default mode (clamped to 1..=100).
    pub jpeg_quality: u8,
    /// Largest input file accepted, in bytes; also the largest output.
    pub max_file_bytes: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            original: false,
            max_dimension: 2048,
            jpeg_quality: 82,
            max_file_bytes: MAX_BLOB_BYTES,
        }
    }
}

/// An image ready to be sealed as a blob.
#[derive(Clone, PartialEq, Eq)]
pub struct PreparedImage {
    /// The file to send: JPEG or PNG, without metadata.
    pub bytes: Vec<u8>,
    /// `image/jpeg` or `image/png`.
    pub mime: String,
    /// Dimensions of the upright picture in `bytes`.
    pub width: u32,
    pub height: u32,
    /// A JPEG of at most [`THUMBNAIL_DIMENSION`] px a side and [`MAX_THUMBNAIL_BYTES`].
    pub thumbnail: Vec<u8>,
}

impl std::fmt::Debug for PreparedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedImage")
            .field("bytes", &self.bytes.len())
            .field("mime", &self.mime)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("thumbnail", &self.thumbnail.len())
            .finish()
    }
}

/// Prepares `file_bytes` for sending. CPU-bound (a large photo takes a fraction of a second
/// in release builds): call it from `spawn_blocking`.
pub fn prepare_image(
    file_bytes: &[u8],
    opts: &PrepareOptions,
) -> Result<PreparedImage, MediaError> {
    if file_bytes.len() > opts.max_file_bytes {
        return Err(MediaError::FileTooLarge {
            got: file_bytes.len(),
            limit: opts.max_file_bytes,
        });
    }
    // The decoders are written not to panic on any input; should one still do so, the
    // file is refused instead of taking the node down.
    catch_unwind(AssertUnwindSafe(|| prepare(file_bytes, opts))).unwrap_or_else(|_| {
        Err(MediaError::Corrupt(
            "the image decoder failed on this file".into(),
        ))
    })
}

fn prepare(file_bytes: &[u8], opts: &PrepareOptions) -> Result<PreparedImage, MediaError> {
    let format = image::guess_format(file_bytes).map_err(|_| MediaError::NotAnImage)?;
    match format {
        ImageFormat::Jpeg => strip::check_jpeg_complete(file_bytes)?,
        ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif => {}
        _ => return Err(MediaError::NotAnImage),
    }
    let (mut img, orientation) = decode(file_bytes, format)?;
    let max_dimension = opts.max_dimension.clamp(1, MAX_IMAGE_DIMENSION);

    let (bytes, mime) = if opts.original {
        match (format, orientation) {
            (ImageFormat::Jpeg, Orientation::NoTransforms) => {
                (strip::strip_jpeg(file_bytes)?, "image/jpeg")
            }
            (ImageFormat::Png, Orientation::NoTransforms) => {
                (strip::strip_png(file_bytes)?, "image/png")
            }
            (ImageFormat::Jpeg, _) => {
                img.apply_orientation(orientation);
                (encode_jpeg(&img, ORIGINAL_JPEG_QUALITY)?, "image/jpeg")
            }
            _ => {
                img.apply_orientation(orientation);
                (encode_png(&img)?, "image/png")
            }
        }
    } else {
        img = downscale(img, max_dimension);
        img.apply_orientation(orientation);
        if format == ImageFormat::Gif || uses_alpha(&img) {
            (encode_png(&img)?, "image/png")
        } else {
            (
                encode_jpeg(&img, opts.jpeg_quality.clamp(1, 100))?,
                "image/jpeg",
            )
        }
    };
    if bytes.len() > opts.max_file_bytes {
        return Err(MediaError::TooLarge(format!(
            "the prepared image has {} bytes, limit {}",
            bytes.len(),
            opts.max_file_bytes
        )));
    }
    // `img` is upright on every path: the lossless ones only take orientation 1.
    Ok(PreparedImage {
        bytes,
        mime: mime.into(),
        width: img.width(),
        height: img.height(),
        thumbnail: thumbnail(&img)?,
    })
}

/// Decodes under the limits and reads the orientation.
fn decode(bytes: &[u8], format: ImageFormat) -> Result<(DynamicImage, Orientation), MediaError> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_DIMENSION);
    limits.max_image_height = Some(MAX_IMAGE_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(MediaError::Corrupt(format!("image of {w}x{h} pixels")));
    }
    let need = decoder.total_bytes();
    if need > MAX_DECODE_BYTES {
        return Err(MediaError::TooLarge(format!(
            "{w}x{h} pixels need {} MiB to decode, limit {} MiB",
            need >> 20,
            MAX_DECODE_BYTES >> 20
        )));
    }
    // A broken EXIF block is ignored, as viewers do: the picture is shown as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let img = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    Ok((img, orientation))
}

fn decode_error(e: ImageError) -> MediaError {
    match e {
        ImageError::Limits(e) => MediaError::TooLarge(e.to_string()),
        ImageError::Unsupported(e) => MediaError::Corrupt(format!("unsupported variant: {e}")),
        e => MediaError::Corrupt(e.to_string()),
    }
}

/// Dimensions that fit `w`x`h` within `max` on the longest side, keeping the aspect ratio.
fn fit(w: u32, h: u32, max: u32) -> (u32, u32) {
    let long = w.max(h);
    if long <= max {
        return (w, h);
    }
    let scale = |d: u32| {
        ((u64::from(d) * u64::from(max) + u64::from(long) / 2) / u64::from(long)).max(1) as u32
    };
    (scale(w), scale(h))
}

/// Shrinks so the longest side is at most `max`. A large reduction first averages down to
/// twice the target (fast, no big intermediate buffers), then a Catmull-Rom filter finishes.
fn downscale(img: DynamicImage, max: u32) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    let (tw, th) = fit(w, h, max);
    if (tw, th) == (w, h) {
        return img;
    }
    let img = if w / 2 > tw && h / 2 > th {
        img.thumbnail_exact(tw * 2, th * 2)
    } else {
        img
    };
    img.resize_exact(tw, th, FilterType::CatmullRom)
}

/// Whether any pixel is less than fully opaque.
fn uses_alpha(img: &DynamicImage) -> bool {
    match img {
        DynamicImage::ImageLumaA8(i) => i.pixels().any(|p| p[1] < u8::MAX),
        DynamicImage::ImageRgba8(i) => i.pixels().any(|p| p[3] < u8::MAX),
        DynamicImage::ImageLumaA16(i) => i.pixels().any(|p| p[1] < u16::MAX),
        DynamicImage::ImageRgba16(i) => i.pixels().any(|p| p[3] < u16::MAX),
        other if other.color().has_alpha() => other.to_rgba8().pixels().any(|p| p[3] < u8::MAX),
        _ => false,
    }
}

/// JPEG with no metadata. Greyscale stays greyscale; anything else becomes 8-bit RGB
/// (transparent pixels are composed over white).
fn encode_jpeg(img: &DynamicImage, quality: u8) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::new();
    let enc = JpegEncoder::new_with_quality(&mut out, quality);
    let result = if img.color().has_color() || img.color().has_alpha() {
        DynamicImage::ImageRgb8(flatten(img)).write_with_encoder(enc)
    } else {
        DynamicImage::ImageLuma8(img.to_luma8()).write_with_encoder(enc)
    };
    result.map_err(|e| MediaError::Encode(e.to_string()))?;
    Ok(out)
}

/// PNG with no metadata, in the image's own colour type and bit depth.
fn encode_png(img: &DynamicImage) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::new();
    let img = match img {
        // PNG has no float samples.
        DynamicImage::ImageRgb32F(_) => DynamicImage::ImageRgb16(img.to_rgb16()),
        DynamicImage::ImageRgba32F(_) => DynamicImage::ImageRgba16(img.to_rgba16()),
        other => other.clone(),
    };
    img.write_with_encoder(PngEncoder::new(&mut out))
        .map_err(|e| MediaError::Encode(e.to_string()))?;
    Ok(out)
}

/// 8-bit RGB, with any transparency composed over white.
fn flatten(img: &DynamicImage) -> image::RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y);
        let a = u16::from(p[3]);
        let mix = |c: u8| ((u16::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([mix(p[0]), mix(p[1]), mix(p[2])])
    })
}

/// A JPEG preview of at most [`THUMBNAIL_DIMENSION`] px a side that fits in
/// [`MAX_THUMBNAIL_BYTES`]: the quality goes down first, then the size.
fn thumbnail(img: &DynamicImage) -> Result<Vec<u8>, MediaError> {
    let mut side = THUMBNAIL_DIMENSION;
    loop {
        let (w, h) = fit(img.width(), img.height(), side);
        let small = img.thumbnail_exact(w, h);
        for quality in (10..=THUMBNAIL_QUALITY).rev().step_by(10) {
            let bytes = encode_jpeg(&small, quality)?;
            if bytes.len() <= MAX_THUMBNAIL_BYTES {
                return Ok(bytes);
            }
        }
        if side <= 8 {
            return Err(MediaError::Encode(
                "thumbnail does not fit its limit".into(),
            ));
        }
        side /= 2;
    }
}
