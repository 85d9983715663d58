//! A ticket's code as a QR image for e-mail: a PNG (every mail client
//! shows PNG; many block SVG and data URLs), attached inline and named in
//! the HTML by its Content-ID. Pure.

use qrcode::{Color, EcLevel, QrCode};

/// Pixels per QR module: 174-character codes make version 9–10 symbols
/// (53–57 modules), so about 250 px with the quiet zone, crisp on paper
/// and phone screens.
const SCALE: usize = 4;
/// The quiet zone the QR standard asks for, in modules.
const QUIET: usize = 4;

/// `data` as a black-on-white QR code (error correction M): the PNG's
/// bytes and its side in pixels.
pub fn png(data: &str) -> Result<(Vec<u8>, u32), String> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)
        .map_err(|e| format!("qr: {e}"))?;
    let modules = code.width();
    let colors = code.to_colors();
    let size = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; size * size];
    for (i, c) in colors.iter().enumerate() {
        if *c != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * size + mx * SCALE..y * size + (mx + 1) * SCALE].fill(0);
        }
    }
    let side = u32::try_from(size).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, side, side);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| e.to_string())?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| e.to_string())?;
    }
    Ok((out, side))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_code_makes_a_png_that_scans_back() {
        let code = "A".repeat(100) + &"b_-9".repeat(18) + "xy";
        assert_eq!(code.len(), 174);
        let (bytes, side) = png(&code).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (side, side));
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_, content) = grids[0].decode().unwrap();
        assert_eq!(content, code);
    }
}
