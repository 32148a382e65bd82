//! The report's pages as positions of text: where every line goes, computed before anything is
//! drawn.
//!
//! Layout is a pure function of the report and the font's widths, so it is tested without a
//! PDF, and the footer can say "page 2 of 5" because all pages are known before drawing.
//! Coordinates are PDF points from the top-left corner of an A4 page; a line's `y` is its
//! baseline.
//!
//! Nothing is ever drawn off the page: every line is wrapped to its column, a field longer
//! than [`MAX_FIELD_LINES`] lines is cut with a visible "…", and a certificate's block that does
//! not fit on what is left of a page starts on the next one (one taller than a whole page, which
//! only absurdly long fields make, flows across pages row by row).

use crate::font::{Face, Fonts};
use crate::time;
use crate::words::{self, Pair};
use crate::{CertificateReport, ReportEntry};

/// A4 in points.
pub(crate) const PAGE_W: f32 = 595.28;
pub(crate) const PAGE_H: f32 = 841.89;
pub(crate) const MARGIN_X: f32 = 56.7;
pub(crate) const BODY_W: f32 = PAGE_W - 2.0 * MARGIN_X;
const TOP: f32 = 56.7;
/// The body ends here; below it are the footer's rule and lines.
const BODY_BOTTOM: f32 = PAGE_H - 72.0;

/// The labels' column, and the values' column to its right.
const LABEL_W: f32 = 190.0;
const COLUMN_GAP: f32 = 10.0;
const VALUE_X: f32 = MARGIN_X + LABEL_W + COLUMN_GAP;
const VALUE_W: f32 = BODY_W - LABEL_W - COLUMN_GAP;

/// The line height, as a multiple of the font size, and where the baseline sits in it.
const LEADING: f32 = 1.3;
const BASELINE: f32 = LEADING - 0.3;

/// How many lines one field may take before it is cut.
pub(crate) const MAX_FIELD_LINES: usize = 8;
/// Marks a field that was cut.
pub(crate) const CUT: char = '…';

/// Grey for labels, the running header and the footer; black for what the report states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ink {
    Black,
    Grey,
}

/// How a piece of text is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Style {
    pub face: Face,
    pub size: f32,
    pub ink: Ink,
}

const TITLE: Style = Style {
    face: Face::Bold,
    size: 15.0,
    ink: Ink::Black,
};
const HEADING: Style = Style {
    face: Face::Bold,
    size: 10.5,
    ink: Ink::Black,
};
const VALUE: Style = Style {
    face: Face::Regular,
    size: 9.5,
    ink: Ink::Black,
};
const LABEL: Style = Style {
    face: Face::Regular,
    size: 8.5,
    ink: Ink::Grey,
};
const SMALL: Style = Style {
    face: Face::Regular,
    size: 7.5,
    ink: Ink::Grey,
};

/// One line of text, already sanitized, wrapped and placed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Line {
    pub x: f32,
    pub y: f32,
    pub style: Style,
    pub text: String,
}

/// A hairline across the body at height `y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rule {
    pub y: f32,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Page {
    pub lines: Vec<Line>,
    pub rules: Vec<Rule>,
}

/// Something placed as a whole, measured from its own top: a header, a row, a heading.
#[derive(Debug, Default, Clone)]
struct Block {
    height: f32,
    lines: Vec<Line>,
    rules: Vec<Rule>,
}

impl Block {
    /// Wraps `text` to `width` (at most `max_lines` lines) and stacks the lines at `x`, from
    /// this block's current bottom down.
    fn text(
        &mut self,
        fonts: &Fonts,
        style: Style,
        x: f32,
        width: f32,
        max_lines: usize,
        text: &str,
    ) {
        for text in wrap(fonts, style, text, width, max_lines) {
            self.lines.push(Line {
                x,
                y: self.height + style.size * BASELINE,
                style,
                text,
            });
            self.height += style.size * LEADING;
        }
    }

    fn rule(&mut self, space_above: f32, space_below: f32) {
        self.height += space_above;
        self.rules.push(Rule { y: self.height });
        self.height += space_below;
    }

    fn gap(&mut self, space: f32) {
        self.height += space;
    }

    /// This block with everything in it moved down by `by` points.
    fn moved_down(mut self, by: f32) -> Self {
        for line in &mut self.lines {
            line.y += by;
        }
        for rule in &mut self.rules {
            rule.y += by;
        }
        self
    }

    /// Appends `below` under this block.
    fn append(&mut self, below: Block) {
        let below = below.moved_down(self.height);
        self.lines.extend(below.lines);
        self.rules.extend(below.rules);
        self.height += below.height;
    }
}

/// The pages of `report`, footers included.
pub(crate) fn pages(fonts: &Fonts, report: &CertificateReport) -> Vec<Page> {
    let mut flow = Flow::new(fonts, report);
    flow.place(header(fonts, report));
    if report.entries.is_empty() {
        let mut block = Block::default();
        block.gap(6.0);
        block.text(
            fonts,
            VALUE,
            MARGIN_X,
            BODY_W,
            MAX_FIELD_LINES,
            &words::NONE_ISSUED.both(),
        );
        flow.place(block);
    }
    for (index, entry) in report.entries.iter().enumerate() {
        flow.place_together(entry_blocks(fonts, index + 1, entry));
    }
    let mut pages = flow.finish();
    let total = pages.len();
    for (index, page) in pages.iter_mut().enumerate() {
        footer(fonts, report, index + 1, total, page);
    }
    pages
}

/// Fills pages top to bottom with blocks.
struct Flow {
    /// What tops every page after the first.
    running_header: Block,
    done: Vec<Page>,
    page: Page,
    /// Where the next block's top goes on the current page.
    y: f32,
}

impl Flow {
    fn new(fonts: &Fonts, report: &CertificateReport) -> Self {
        Self {
            running_header: running_header(fonts, report),
            done: Vec::new(),
            page: Page::default(),
            y: TOP,
        }
    }

    /// Whether `height` fits below the current position.
    fn fits(&self, height: f32) -> bool {
        self.y + height <= BODY_BOTTOM
    }

    /// Whether something is on the current page besides its running header.
    fn page_has_content(&self) -> bool {
        let body_top = if self.done.is_empty() {
            TOP
        } else {
            TOP + self.running_header.height
        };
        self.y > body_top
    }

    fn new_page(&mut self) {
        let finished = std::mem::take(&mut self.page);
        self.done.push(finished);
        self.y = TOP;
        self.put(self.running_header.clone());
    }

    fn put(&mut self, block: Block) {
        let block = block.moved_down(self.y);
        self.page.lines.extend(block.lines);
        self.page.rules.extend(block.rules);
        self.y += block.height;
    }

    /// Places one block, on a new page if it does not fit on this one.
    fn place(&mut self, block: Block) {
        if !self.fits(block.height) && self.page_has_content() {
            self.new_page();
        }
        self.put(block);
    }

    /// Places blocks on one page when they fit on one: moved whole to a new page rather than
    /// split, and flowed one by one only when taller than a page.
    fn place_together(&mut self, blocks: Vec<Block>) {
        let height: f32 = blocks.iter().map(|b| b.height).sum();
        let fresh_page = BODY_BOTTOM - TOP - self.running_header.height;
        if !self.fits(height) && height <= fresh_page && self.page_has_content() {
            self.new_page();
        }
        for block in blocks {
            self.place(block);
        }
    }

    fn finish(mut self) -> Vec<Page> {
        self.done.push(self.page);
        self.done
    }
}

fn header(fonts: &Fonts, report: &CertificateReport) -> Block {
    let mut block = Block::default();
    for title in [words::TITLE.kk, words::TITLE.ru] {
        block.text(fonts, TITLE, MARGIN_X, BODY_W, 2, title);
    }
    block.gap(2.0);
    block.text(fonts, LABEL, MARGIN_X, BODY_W, 2, &words::ISSUER.both());
    block.rule(6.0, 4.0);
    let generated = format!("{} UTC", time::minute(report.generated_at));
    let count = report.entries.len().to_string();
    for (label, value) in [
        (words::HOLDER, report.holder_name.as_str()),
        (words::SUBJECT_ID, report.subject_id.as_str()),
        (words::GENERATED_AT, generated.as_str()),
        (words::COUNT, count.as_str()),
    ] {
        block.append(row(fonts, label, value));
    }
    block
}

/// The top of every page after the first: which report the page belongs to.
fn running_header(fonts: &Fonts, report: &CertificateReport) -> Block {
    let mut block = Block::default();
    let text = format!("{} — {}", words::TITLE.both(), report.subject_id);
    block.text(fonts, SMALL, MARGIN_X, BODY_W, 1, &text);
    // No rule of its own: the certificate that follows starts with one.
    block
}

/// One certificate: its heading together with its first row (a heading is never left alone at
/// the bottom of a page), then a block per row.
fn entry_blocks(fonts: &Fonts, number: usize, entry: &ReportEntry) -> Vec<Block> {
    let validity = format!(
        "{} — {} UTC",
        time::minute(entry.not_before),
        time::minute(entry.not_after)
    );
    let mut rows: Vec<(Pair, String)> = vec![
        (words::HOLDER, entry.holder_name.clone()),
        (words::SERIAL, entry.serial_hex.clone()),
        (words::PROFILE, entry.profile.clone()),
        (words::VALIDITY, validity),
        (words::STATE, words::state(entry.state).both()),
        (words::ISSUED_HOW, entry.issued_how.clone()),
        (
            words::KEY_STORAGE,
            words::key_storage(entry.key_storage).both(),
        ),
    ];
    if let Some(revocation) = &entry.revocation {
        rows.push((
            words::REVOKED_AT,
            format!("{} UTC", time::minute(revocation.at)),
        ));
        let reason = match words::revocation_reason(&revocation.reason) {
            Some(pair) => format!("{} — {}", revocation.reason, pair.both()),
            None => revocation.reason.clone(),
        };
        rows.push((words::REASON, reason));
    }

    let mut rows = rows
        .into_iter()
        .map(|(label, value)| row(fonts, label, &value));
    let mut first = Block::default();
    first.rule(8.0, 4.0);
    first.text(fonts, HEADING, MARGIN_X, BODY_W, 1, &format!("№ {number}"));
    first.gap(2.0);
    if let Some(first_row) = rows.next() {
        first.append(first_row);
    }
    std::iter::once(first).chain(rows).collect()
}

/// A labelled row: the label (`kk / ru`, grey) in the left column, the value in the right one,
/// each wrapped to its column; the row is as tall as the taller of the two.
fn row(fonts: &Fonts, label: Pair, value: &str) -> Block {
    let mut labels = Block::default();
    // The label is smaller than the value: moved down so that both share the first baseline.
    labels.gap((VALUE.size - LABEL.size) * BASELINE);
    labels.text(
        fonts,
        LABEL,
        MARGIN_X,
        LABEL_W,
        MAX_FIELD_LINES,
        &label.both(),
    );
    let mut values = Block::default();
    values.text(fonts, VALUE, VALUE_X, VALUE_W, MAX_FIELD_LINES, value);
    let height = labels.height.max(values.height) + 1.5;
    let mut row = Block {
        height,
        lines: labels.lines,
        rules: Vec::new(),
    };
    row.lines.extend(values.lines);
    row
}

/// The footer of page `number` of `total`: the NUC key that signs the report, if named, and
/// the page number.
fn footer(fonts: &Fonts, report: &CertificateReport, number: usize, total: usize, page: &mut Page) {
    let mut block = Block::default();
    block.rule(0.0, 1.0);
    if !report.signed_by.is_empty() {
        let key = format!("{}: {}", words::SIGNING_KEY.both(), report.signed_by);
        block.text(fonts, SMALL, MARGIN_X, BODY_W, 2, &key);
    }
    let page_number = format!(
        "{} {number} ({} {total})",
        words::PAGE.both(),
        words::OF_TOTAL.both()
    );
    block.text(fonts, SMALL, MARGIN_X, BODY_W, 1, &page_number);
    let block = block.moved_down(BODY_BOTTOM + 14.0);
    page.lines.extend(block.lines);
    page.rules.extend(block.rules);
}

/// `text`, sanitized, broken into lines no wider than `width`: at spaces, and inside a word
/// only when the word alone is wider than a line (a serial, a long name). Beyond `max_lines`
/// the text is cut and the last line ends with [`CUT`]. An empty text is a visible dash.
pub(crate) fn wrap(
    fonts: &Fonts,
    style: Style,
    text: &str,
    width: f32,
    max_lines: usize,
) -> Vec<String> {
    let max_lines = max_lines.max(1);
    let text = fonts.sanitize(text);
    let advance = |c: char| fonts.width(style.face, style.size, c.encode_utf8(&mut [0; 4]));
    let space = advance(' ');
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut line_w = 0.0;
    let mut cut = false;
    'words: for word in text.split(' ').filter(|w| !w.is_empty()) {
        let word_w: f32 = word.chars().map(advance).sum();
        if !line.is_empty() && line_w + space + word_w <= width {
            line.push(' ');
            line.push_str(word);
            line_w += space + word_w;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
            line_w = 0.0;
        }
        if lines.len() >= max_lines {
            cut = true;
            break;
        }
        // Character by character: a word that fits starts the line; a longer one is broken.
        for c in word.chars() {
            let w = advance(c);
            if !line.is_empty() && line_w + w > width {
                lines.push(std::mem::take(&mut line));
                line_w = 0.0;
                if lines.len() >= max_lines {
                    cut = true;
                    break 'words;
                }
            }
            line.push(c);
            line_w += w;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        cut = true;
    }
    if cut && let Some(last) = lines.last_mut() {
        let cut_w = advance(CUT);
        let mut last_w: f32 = last.chars().map(advance).sum();
        while last_w + cut_w > width {
            match last.pop() {
                Some(c) => last_w -= advance(c),
                None => break,
            }
        }
        last.push(CUT);
    }
    if lines.is_empty() {
        lines.push(words::EMPTY.to_owned());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EntryState, KeyStorageWord};

    const TEN: Style = Style {
        face: Face::Regular,
        size: 10.0,
        ink: Ink::Black,
    };

    fn fonts() -> Fonts {
        Fonts::load().unwrap()
    }

    fn entry(serial: &str) -> ReportEntry {
        ReportEntry {
            holder_name: "Әлия Қайратқызы Өмірбекова".into(),
            profile: "individual-auth".into(),
            serial_hex: serial.into(),
            not_before: 1_700_000_000,
            not_after: 1_731_536_000,
            state: EntryState::Valid,
            issued_how: "ЦОН 001".into(),
            key_storage: KeyStorageWord::IdCard,
            revocation: None,
        }
    }

    fn report(entries: Vec<ReportEntry>) -> CertificateReport {
        CertificateReport {
            holder_name: "Әлия".into(),
            subject_id: "IIN 900101300123".into(),
            generated_at: 1_796_315_640,
            signed_by: "0a1b".into(),
            entries,
        }
    }

    /// Every line of every page lies inside the page, horizontally and vertically.
    fn assert_on_page(fonts: &Fonts, pages: &[Page]) {
        for page in pages {
            for line in &page.lines {
                let w = fonts.width(line.style.face, line.style.size, &line.text);
                assert!(
                    line.x >= 0.0 && line.x + w <= PAGE_W - MARGIN_X + 0.01,
                    "{line:?} is {w} wide"
                );
                assert!(
                    line.y > line.style.size && line.y < PAGE_H - 20.0,
                    "{line:?}"
                );
            }
        }
    }

    #[test]
    fn short_text_is_one_line_and_empty_text_a_dash() {
        let fonts = fonts();
        assert_eq!(
            wrap(&fonts, TEN, "Әлия  Қайратқызы", 300.0, MAX_FIELD_LINES),
            ["Әлия Қайратқызы"]
        );
        assert_eq!(
            wrap(&fonts, TEN, "", 300.0, MAX_FIELD_LINES),
            [words::EMPTY]
        );
        assert_eq!(
            wrap(&fonts, TEN, " \n\t ", 300.0, MAX_FIELD_LINES),
            [words::EMPTY]
        );
    }

    #[test]
    fn long_words_break_and_long_fields_are_cut_visibly() {
        let fonts = fonts();
        let serial = "0123456789abcdef".repeat(8);
        let lines = wrap(&fonts, TEN, &serial, 100.0, MAX_FIELD_LINES);
        assert!(lines.len() > 1);
        assert_eq!(lines.concat(), serial);
        for line in &lines {
            assert!(fonts.width(Face::Regular, 10.0, line) <= 100.0);
        }

        let endless = "Ұлықбекұлы ".repeat(10_000);
        let lines = wrap(&fonts, TEN, &endless, 100.0, MAX_FIELD_LINES);
        assert_eq!(lines.len(), MAX_FIELD_LINES);
        let last = lines.last().unwrap();
        assert!(last.ends_with(CUT), "{last}");
        assert!(fonts.width(Face::Regular, 10.0, last) <= 100.0);

        // Narrower than one character: still no panic, still a visible cut.
        let lines = wrap(&fonts, TEN, "ӘӘӘ", 1.0, 1);
        assert_eq!(lines, ["…"]);
    }

    #[test]
    fn sixty_entries_flow_over_several_pages_inside_them() {
        let fonts = fonts();
        let entries = (0..60).map(|i| entry(&format!("{i:040x}"))).collect();
        let pages = pages(&fonts, &report(entries));
        assert!(pages.len() >= 5, "{} pages", pages.len());
        assert_on_page(&fonts, &pages);
        // Each entry's heading and its first row stay on one page.
        for page in &pages {
            let last_heading = page.lines.iter().rposition(|l| l.text.starts_with("№ "));
            if let Some(at) = last_heading {
                assert!(page.lines.len() > at + 1);
            }
        }
    }

    #[test]
    fn huge_fields_stay_on_the_page() {
        let fonts = fonts();
        let mut long = entry(&"f".repeat(5_000));
        long.holder_name = "Ғалымжан ".repeat(5_000);
        long.issued_how = "x".repeat(100_000);
        long.profile = String::new();
        let mut report = report(vec![long.clone(), long.clone(), long]);
        report.subject_id = "BIN ".repeat(1_000);
        report.signed_by = "ab".repeat(1_000);
        let pages = pages(&fonts, &report);
        assert_on_page(&fonts, &pages);
    }

    #[test]
    fn no_entries_is_one_page_that_says_so() {
        let fonts = fonts();
        let pages = pages(&fonts, &report(Vec::new()));
        assert_eq!(pages.len(), 1);
        assert!(
            pages[0]
                .lines
                .iter()
                .any(|l| l.text == words::NONE_ISSUED.both())
        );
    }
}
