//! A big-endian bit reader with exp-Golomb codes, for parameter sets.

use super::CodecError;

/// Reads bits most-significant first from a byte slice.
#[derive(Debug)]
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> BitReader<'a> {
        BitReader { data, pos: 0 }
    }

    pub fn read_bit(&mut self) -> Result<bool, CodecError> {
        let byte = self.data.get(self.pos / 8).ok_or(CodecError::Truncated("bitstream"))?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Reads up to 32 bits.
    pub fn read_bits(&mut self, n: u32) -> Result<u32, CodecError> {
        debug_assert!(n <= 32);
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.read_bit()?);
        }
        Ok(v)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), CodecError> {
        if self.pos + n > self.data.len() * 8 {
            return Err(CodecError::Truncated("bitstream"));
        }
        self.pos += n;
        Ok(())
    }

    /// Unsigned exp-Golomb.
    pub fn read_ue(&mut self) -> Result<u32, CodecError> {
        let mut zeros = 0u32;
        while !self.read_bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(CodecError::Invalid("exp-Golomb code longer than 32 bits".into()));
            }
        }
        let rest = self.read_bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }

    /// Signed exp-Golomb.
    pub fn read_se(&mut self) -> Result<i32, CodecError> {
        let k = i64::from(self.read_ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exp_golomb() {
        // 1 | 010 | 011 | 00100 -> 0, 1, 2, 3
        let data = [0b1010_0110, 0b0100_0000];
        let mut b = BitReader::new(&data);
        assert_eq!(b.read_ue().ok(), Some(0));
        assert_eq!(b.read_ue().ok(), Some(1));
        assert_eq!(b.read_ue().ok(), Some(2));
        assert_eq!(b.read_ue().ok(), Some(3));
        let data = [0b0100_1100];
        let mut b = BitReader::new(&data);
        assert_eq!(b.read_se().ok(), Some(1));
        assert_eq!(b.read_se().ok(), Some(-1));
    }

    #[test]
    fn running_out_is_an_error() {
        let mut b = BitReader::new(&[0]);
        assert!(b.read_ue().is_err());
        assert!(BitReader::new(&[]).read_bit().is_err());
    }
}
