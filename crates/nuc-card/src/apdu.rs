//! C-APDUs as the card writer sends them: short lengths only (every reader and card takes them),
//! with command chaining for data over 255 bytes and GET RESPONSE for answers over 256.

use zeroize::Zeroizing;

/// Longest data field of a short C-APDU.
pub const MAX_SHORT_DATA: usize = 255;

/// CLA bit of a chained command that is not the last of its chain.
pub const CLA_CHAINING: u8 = 0x10;

/// One command, before encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command<'a> {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    /// At most [`MAX_SHORT_DATA`] bytes.
    pub data: &'a [u8],
    /// Whether an answer is expected (Le = 00: up to 256 bytes).
    pub expects_data: bool,
}

impl<'a> Command<'a> {
    pub fn new(ins: u8, p1: u8, p2: u8) -> Command<'a> {
        Command {
            cla: 0x00,
            ins,
            p1,
            p2,
            data: &[],
            expects_data: false,
        }
    }

    pub fn data(mut self, data: &'a [u8]) -> Command<'a> {
        self.data = data;
        self
    }

    pub fn expect_data(mut self) -> Command<'a> {
        self.expects_data = true;
        self
    }

    /// The bytes on the wire, in a buffer wiped after use (a VERIFY carries the PIN).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(6 + self.data.len()));
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if !self.data.is_empty() {
            // Callers split longer data into chained commands; a longer field here is a bug
            // that must not turn into a wrong Lc.
            debug_assert!(self.data.len() <= MAX_SHORT_DATA);
            out.push(self.data.len().min(MAX_SHORT_DATA) as u8);
            out.extend_from_slice(&self.data[..self.data.len().min(MAX_SHORT_DATA)]);
        }
        if self.expects_data {
            out.push(0x00);
        }
        out
    }
}

/// Splits `data` into the chain of commands that carries it (`CLA 10` on all but the last).
/// Empty data gives one command with no data field.
pub fn chain<'a>(ins: u8, p1: u8, p2: u8, data: &'a [u8]) -> Vec<Command<'a>> {
    if data.is_empty() {
        return vec![Command::new(ins, p1, p2)];
    }
    let chunks: Vec<&[u8]> = data.chunks(MAX_SHORT_DATA).collect();
    let last = chunks.len() - 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut cmd = Command::new(ins, p1, p2).data(chunk);
            if i < last {
                cmd.cla |= CLA_CHAINING;
            }
            cmd
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(
            &Command::new(0x20, 0, 0x81).encode()[..],
            &[0, 0x20, 0, 0x81]
        );
        assert_eq!(
            &Command::new(0xCA, 1, 0).expect_data().encode()[..],
            &[0, 0xCA, 1, 0, 0]
        );
        assert_eq!(
            &Command::new(0x2A, 0x9E, 0x9A)
                .data(&[1, 2])
                .expect_data()
                .encode()[..],
            &[0, 0x2A, 0x9E, 0x9A, 2, 1, 2, 0]
        );
    }

    #[test]
    fn chains() {
        let data = vec![7u8; 600];
        let cmds = chain(0xDB, 0xC1, 1, &data);
        assert_eq!(cmds.len(), 3);
        assert_eq!(
            cmds.iter().map(|c| c.cla).collect::<Vec<_>>(),
            [0x10, 0x10, 0x00]
        );
        assert_eq!(cmds.iter().map(|c| c.data.len()).sum::<usize>(), 600);
        assert_eq!(chain(0xDB, 0xC1, 1, &[]).len(), 1);
    }
}
