//! The checkpoint: the log's statement "my tree of this size has this root", in the C2SP
//! tlog-checkpoint text form, which becomes the body of a signed note.
//!
//! ```text
//! <origin>\n
//! <tree size, decimal>\n
//! <root hash, base64>\n
//! [<extension line>\n]...
//! ```
//!
//! Parsing is strict, because the same checkpoint must have exactly one text: every line ends
//! in "\n", the size has no sign and no leading zero, the root is canonical padded base64 of
//! exactly 32 bytes, no line is empty and none holds a control character (a "\r" of CRLF
//! included). Extension lines are kept as they are, in order; the service puts its time there.

use base64::{Engine as _, engine::general_purpose::STANDARD};

use crate::hash::Hash;

/// A checkpoint body, parsed or about to be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log unambiguously (a schema-less URL by convention).
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Extension lines, without their final newline, in order.
    pub extensions: Vec<String>,
}

/// Why a checkpoint text or value was refused; lines are numbered from 1.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("the checkpoint does not end with a newline")]
    MissingFinalNewline,
    #[error("the checkpoint has no line {0}")]
    MissingLine(usize),
    #[error("line {0} is empty")]
    EmptyLine(usize),
    #[error("line {0} holds a control character")]
    ControlCharacter(usize),
    #[error("line 2: the tree size is not a canonical decimal number")]
    SizeNotCanonical,
    #[error("line 2: the tree size does not fit in 64 bits")]
    SizeOverflow,
    #[error("line 3: the root hash is not canonical base64 of 32 bytes")]
    BadRootHash,
}

/// A line's content is acceptable: not empty, no control character (the newline is the
/// terminator, never part of the line).
fn check_line(line: &str, number: usize) -> Result<(), CheckpointError> {
    if line.is_empty() {
        return Err(CheckpointError::EmptyLine(number));
    }
    if line.chars().any(char::is_control) {
        return Err(CheckpointError::ControlCharacter(number));
    }
    Ok(())
}

impl Checkpoint {
    /// Parse a checkpoint body (the note text, final newline included).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let Some(text) = text.strip_suffix('\n') else {
            return Err(CheckpointError::MissingFinalNewline);
        };
        let mut lines = text.split('\n');
        let mut next = |number: usize| -> Result<&str, CheckpointError> {
            let line = lines.next().ok_or(CheckpointError::MissingLine(number))?;
            check_line(line, number)?;
            Ok(line)
        };
        let origin = next(1)?.to_owned();
        let size = parse_size(next(2)?)?;
        let root = parse_root(next(3)?)?;
        let mut extensions = Vec::new();
        for (i, line) in lines.enumerate() {
            check_line(line, i + 4)?;
            extensions.push(line.to_owned());
        }
        Ok(Checkpoint {
            origin,
            size,
            root,
            extensions,
        })
    }

    /// The body text, which is what the log and the witnesses sign. Refuses an origin or an
    /// extension line that [`Checkpoint::parse`] would refuse, so every body it makes parses back.
    pub fn to_body(&self) -> Result<String, CheckpointError> {
        check_line(&self.origin, 1)?;
        for (i, ext) in self.extensions.iter().enumerate() {
            check_line(ext, i + 4)?;
        }
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for ext in &self.extensions {
            body.push_str(ext);
            body.push('\n');
        }
        Ok(body)
    }
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let canonical =
        line.bytes().all(|b| b.is_ascii_digit()) && (line == "0" || !line.starts_with('0'));
    if !canonical {
        return Err(CheckpointError::SizeNotCanonical);
    }
    line.parse::<u64>()
        .map_err(|_| CheckpointError::SizeOverflow)
}

fn parse_root(line: &str) -> Result<Hash, CheckpointError> {
    let bytes = STANDARD
        .decode(line)
        .map_err(|_| CheckpointError::BadRootHash)?;
    let root: Hash = bytes.try_into().map_err(|_| CheckpointError::BadRootHash)?;
    // The decoder already refuses stray trailing bits; re-encoding makes canonical form the rule.
    if STANDARD.encode(root) != line {
        return Err(CheckpointError::BadRootHash);
    }
    Ok(root)
}
