//! A ticket's code as an inline SVG QR code on the booking page: markup,
//! not a script or an image request, so the page's Content-Security-Policy
//! needs nothing new, and it prints as sharply as it shows.

use qrcode::{Color, EcLevel, QrCode};

use super::layout::escape;

/// The quiet zone the QR standard asks for, in modules.
const QUIET: usize = 4;

/// `data` as an SVG QR code (error correction M) named `label` for
/// screen readers; None if it cannot be encoded (too long).
pub fn svg(data: &str, label: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).ok()?;
    let w = code.width();
    let colors = code.to_colors();
    let size = w + 2 * QUIET;
    // One path, one subpath per run of dark modules in a row: a 57-module
    // code is a few kilobytes.
    let mut d = String::new();
    for (y, row) in colors.chunks(w).enumerate() {
        let mut x = 0;
        while x < w {
            if row[x] != Color::Dark {
                x += 1;
                continue;
            }
            let start = x;
            while x < w && row[x] == Color::Dark {
                x += 1;
            }
            let len = x - start;
            d.push_str(&format!("M{} {}h{len}v1h-{len}z", start + QUIET, y + QUIET));
        }
    }
    Some(format!(
        "<svg class=\"qr\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/>\
         <path d=\"{d}\" fill=\"#000\"/></svg>",
        escape(label)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_becomes_one_named_svg() {
        let svg = svg(&"x".repeat(174), "Ticket for seat <F12>").unwrap();
        assert!(svg.starts_with(
            "<svg class=\"qr\" role=\"img\" aria-label=\"Ticket for seat &lt;F12&gt;\""
        ));
        assert_eq!(svg.matches("<path").count(), 1);
        assert!(svg.len() < 12_000, "{}", svg.len());
        assert!(!svg.contains("style="), "no inline style (CSP)");
        assert_eq!(super::svg(&"x".repeat(5000), "too long"), None);
    }
}
