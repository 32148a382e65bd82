//! The embedded font, and text turned into glyphs the report can measure exactly.
//!
//! DejaVu Sans (regular and bold, fonts/, with its licence) covers the Kazakh letters
//! (Ә Ғ Қ Ң Ө Ұ Ү Һ І and their lower case) besides Cyrillic and Latin. krilla embeds a subset of
//! it in each PDF with a ToUnicode map, so the text comes out of the PDF as the letters it was.
//!
//! The report places glyphs itself, one per character (the font's nominal glyph and its advance
//! width), instead of shaping: Cyrillic and Latin need no shaping, the width used to wrap a line
//! is then exactly the width drawn, and the text is copied out character for character. What
//! the font cannot draw, and the control and bidirectional formatting characters that could
//! hide or reorder text in a signed document, become U+FFFD, drawn as the font's visible �.

use krilla::text::{GlyphId as PdfGlyphId, KrillaGlyph};
use skrifa::instance::{LocationRef, Size};
use skrifa::metrics::GlyphMetrics;
use skrifa::{FontRef, GlyphId, MetadataProvider, charmap::Charmap};

static REGULAR: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

/// Which of the two embedded faces a run of text is set in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Face {
    Regular,
    Bold,
}

/// What stands in for a character that must not or cannot be drawn.
pub(crate) const REPLACEMENT: char = '\u{FFFD}';

/// One face, read for measuring and handed to krilla for drawing.
pub(crate) struct LoadedFace {
    charmap: Charmap<'static>,
    metrics: GlyphMetrics<'static>,
    units_per_em: f32,
    replacement: GlyphId,
    pub(crate) pdf: krilla::text::Font,
}

/// Both faces of the report.
pub(crate) struct Fonts {
    regular: LoadedFace,
    bold: LoadedFace,
}

/// Why the embedded font could not be used: only if the files in fonts/ were replaced by
/// something that is not a TrueType font with U+FFFD.
#[derive(Debug, thiserror::Error)]
#[error("the embedded font {0} cannot be read")]
pub(crate) struct FontUnreadable(pub(crate) &'static str);

impl LoadedFace {
    fn load(bytes: &'static [u8], name: &'static str) -> Result<Self, FontUnreadable> {
        let font = FontRef::new(bytes).map_err(|_| FontUnreadable(name))?;
        let charmap = font.charmap();
        let replacement = charmap.map(REPLACEMENT).ok_or(FontUnreadable(name))?;
        let units_per_em = f32::from(
            font.metrics(Size::unscaled(), LocationRef::default())
                .units_per_em,
        );
        if units_per_em <= 0.0 {
            return Err(FontUnreadable(name));
        }
        let pdf = krilla::text::Font::new(bytes.into(), 0).ok_or(FontUnreadable(name))?;
        Ok(Self {
            charmap,
            metrics: font.glyph_metrics(Size::unscaled(), LocationRef::default()),
            units_per_em,
            replacement,
            pdf,
        })
    }

    /// The glyph for `c`, which [`sanitize`] has already made drawable.
    fn glyph(&self, c: char) -> GlyphId {
        self.charmap.map(c).unwrap_or(self.replacement)
    }

    /// The advance of `c` for a font size of 1 (em units).
    fn advance(&self, c: char) -> f32 {
        self.metrics.advance_width(self.glyph(c)).unwrap_or(0.0) / self.units_per_em
    }

    /// Whether this face has a glyph of its own for `c`.
    fn covers(&self, c: char) -> bool {
        self.charmap.map(c).is_some()
    }
}

impl Fonts {
    pub(crate) fn load() -> Result<Self, FontUnreadable> {
        Ok(Self {
            regular: LoadedFace::load(REGULAR, "DejaVuSans.ttf")?,
            bold: LoadedFace::load(BOLD, "DejaVuSans-Bold.ttf")?,
        })
    }

    pub(crate) fn face(&self, face: Face) -> &LoadedFace {
        match face {
            Face::Regular => &self.regular,
            Face::Bold => &self.bold,
        }
    }

    /// `text` as the report will draw it: line breaks and tabs become spaces, and every
    /// character that either face cannot draw, or that is a control or bidirectional
    /// formatting character, becomes [`REPLACEMENT`]. Both faces are asked so that a string
    /// measures the same whichever face sets it.
    pub(crate) fn sanitize(&self, text: &str) -> String {
        text.chars()
            .map(|c| match c {
                '\t' | '\n' | '\r' => ' ',
                c if c.is_control() || is_bidi_format(c) => REPLACEMENT,
                c if self.regular.covers(c) && self.bold.covers(c) => c,
                _ => REPLACEMENT,
            })
            .collect()
    }

    /// The width of already sanitized `text` in `face` at `size` points.
    pub(crate) fn width(&self, face: Face, size: f32, text: &str) -> f32 {
        let face = self.face(face);
        text.chars().map(|c| face.advance(c)).sum::<f32>() * size
    }

    /// The glyphs of already sanitized `text`, one per character, each mapped back to its
    /// character for the PDF's ToUnicode map.
    pub(crate) fn glyphs(&self, face: Face, text: &str) -> Vec<KrillaGlyph> {
        let face = self.face(face);
        text.char_indices()
            .map(|(at, c)| {
                KrillaGlyph::new(
                    PdfGlyphId::new(face.glyph(c).to_u32()),
                    face.advance(c),
                    0.0,
                    0.0,
                    0.0,
                    at..at + c.len_utf8(),
                    None,
                )
            })
            .collect()
    }
}

/// The Unicode bidirectional formatting characters (marks, embeddings, overrides, isolates):
/// they are invisible and would let a name be displayed in an order other than it is stored.
fn is_bidi_format(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kazakh_letters_are_drawn_as_themselves() {
        let fonts = Fonts::load().unwrap();
        let kazakh = "ӘәҒғҚқҢңӨөҰұҮүҺһІі";
        assert_eq!(fonts.sanitize(kazakh), kazakh);
        assert_eq!(fonts.sanitize("Ёлка №5 — «IIN»"), "Ёлка №5 — «IIN»");
    }

    #[test]
    fn what_cannot_be_drawn_becomes_a_visible_replacement() {
        let fonts = Fonts::load().unwrap();
        // CJK is not in DejaVu Sans; NUL and ESC are controls; U+202E would reverse the text.
        assert_eq!(
            fonts.sanitize("a漢\u{0}\u{1b}\u{202E}b"),
            "a\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}b"
        );
        assert_eq!(fonts.sanitize("a\tb\nc\r"), "a b c ");
        assert!(fonts.width(Face::Regular, 10.0, "\u{FFFD}") > 0.0);
    }

    #[test]
    fn widths_grow_with_size_and_bold_is_wider() {
        let fonts = Fonts::load().unwrap();
        let w = fonts.width(Face::Regular, 10.0, "Қайратқызы");
        assert!(w > 30.0 && w < 80.0, "{w}");
        assert!((fonts.width(Face::Regular, 20.0, "Қайратқызы") - 2.0 * w).abs() < 0.01);
        assert!(fonts.width(Face::Bold, 10.0, "Қайратқызы") > w);
        assert_eq!(fonts.glyphs(Face::Regular, "Әл").len(), 2);
    }
}
