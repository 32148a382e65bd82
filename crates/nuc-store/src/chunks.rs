//! A CRL's bytes cut into the pieces every store keeps them in ([`CRL_CHUNK_BYTES`] at most),
//! read from the body handed to `record_crls` one piece at a time: recording a CRL of ten
//! million entries holds one piece in memory, not the CRL.

use std::io::{ErrorKind, Read};

use crate::CRL_CHUNK_BYTES;

/// Why the pieces of a CRL were not all stored.
#[derive(Debug)]
pub enum PiecesError<E> {
    /// The store refused a piece.
    Store(E),
    /// The body could not be read, or was not exactly as long as announced.
    Body(String),
}

/// Reads `der` to its end in pieces of [`CRL_CHUNK_BYTES`] (the last may be shorter) and hands
/// each to `put` with its number, from 0. Fails if the body does not hold exactly `size`
/// bytes; the caller's transaction then keeps none of the pieces.
pub fn store_pieces<E>(
    der: &mut dyn Read,
    size: i64,
    mut put: impl FnMut(i64, &[u8]) -> Result<(), E>,
) -> Result<(), PiecesError<E>> {
    let mut buf = vec![0u8; CRL_CHUNK_BYTES];
    let mut total = 0i64;
    let mut seq = 0i64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match der.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(PiecesError::Body(format!("reading its bytes: {e}"))),
            }
        }
        if filled == 0 {
            break;
        }
        total += filled as i64;
        if total > size {
            return Err(PiecesError::Body(format!(
                "more than the {size} bytes announced"
            )));
        }
        put(seq, &buf[..filled]).map_err(PiecesError::Store)?;
        seq += 1;
        if filled < buf.len() {
            break;
        }
    }
    if total != size {
        return Err(PiecesError::Body(format!(
            "{total} bytes given, {size} announced"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(bytes: &[u8], size: i64) -> Result<Vec<Vec<u8>>, PiecesError<()>> {
        let mut out = Vec::new();
        store_pieces(&mut std::io::Cursor::new(bytes), size, |seq, p| {
            assert_eq!(seq as usize, out.len());
            out.push(p.to_vec());
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn cuts_at_the_piece_size_and_keeps_every_byte() {
        let bytes: Vec<u8> = (0..CRL_CHUNK_BYTES * 2 + 7).map(|i| i as u8).collect();
        let got = pieces(&bytes, bytes.len() as i64).unwrap();
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            [CRL_CHUNK_BYTES, CRL_CHUNK_BYTES, 7]
        );
        assert_eq!(got.concat(), bytes);
        let exact = vec![1u8; CRL_CHUNK_BYTES];
        assert_eq!(pieces(&exact, exact.len() as i64).unwrap().len(), 1);
        assert!(pieces(&[], 0).unwrap().is_empty());
    }

    #[test]
    fn a_body_of_another_length_is_refused() {
        assert!(
            matches!(pieces(b"abc", 4), Err(PiecesError::Body(m)) if m.contains("3 bytes given"))
        );
        assert!(matches!(pieces(b"abc", 2), Err(PiecesError::Body(m)) if m.contains("more than")));
    }
}
