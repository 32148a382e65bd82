//! Laid-out pages drawn into a PDF with krilla.
//!
//! Everything that makes the bytes depend on anything but the report is pinned here: the
//! creation date is the report's `generated_at`, and krilla derives the document's IDs from
//! hashes of the content, so the same report always gives the same bytes (what is signed can be
//! rendered again and compared).

use krilla::Document;
use krilla::color::luma;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::{DateTime, Metadata};
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, FillRule};

use crate::ReportError;
use crate::font::Fonts;
use crate::layout::{self, Ink, Page};
use crate::time;
use crate::words;

const GREY: u8 = 90;
const RULE_GREY: u8 = 170;
const RULE_THICKNESS: f32 = 0.5;

pub(crate) fn draw(
    fonts: &Fonts,
    pages: &[Page],
    generated_at: i64,
) -> Result<Vec<u8>, ReportError> {
    let created = time::civil(generated_at).ok_or(ReportError::TimeOutOfRange(generated_at))?;
    let mut document = Document::new();
    document.set_metadata(
        Metadata::new()
            .title(words::TITLE.both())
            .language("kk".to_owned())
            .creator("NUC RK".to_owned())
            .creation_date(
                DateTime::new(created.year)
                    .month(created.month)
                    .day(created.day)
                    .hour(created.hour)
                    .minute(created.minute)
                    .second(created.second)
                    .utc_offset_hour(0)
                    .utc_offset_minute(0),
            ),
    );
    let settings = PageSettings::from_wh(layout::PAGE_W, layout::PAGE_H)
        .ok_or_else(|| ReportError::Pdf("the A4 page size was refused".to_owned()))?;
    for content in pages {
        let mut page = document.start_page_with(settings.clone());
        let mut surface = page.surface();
        surface.set_fill(Some(fill(RULE_GREY)));
        for rule in &content.rules {
            let mut path = PathBuilder::new();
            if let Some(rect) =
                Rect::from_xywh(layout::MARGIN_X, rule.y, layout::BODY_W, RULE_THICKNESS)
            {
                path.push_rect(rect);
            }
            if let Some(path) = path.finish() {
                surface.draw_path(&path);
            }
        }
        for line in &content.lines {
            surface.set_fill(Some(fill(match line.style.ink {
                Ink::Black => 0,
                Ink::Grey => GREY,
            })));
            let glyphs = fonts.glyphs(line.style.face, &line.text);
            surface.draw_glyphs(
                Point::from_xy(line.x, line.y),
                &glyphs,
                fonts.face(line.style.face).pdf.clone(),
                &line.text,
                line.style.size,
                false,
            );
        }
        surface.finish();
        page.finish();
    }
    document
        .finish()
        .map_err(|e| ReportError::Pdf(format!("{e:?}")))
}

fn fill(lightness: u8) -> Fill {
    Fill {
        paint: luma::Color::new(lightness).into(),
        opacity: NormalizedF32::ONE,
        rule: FillRule::default(),
    }
}
