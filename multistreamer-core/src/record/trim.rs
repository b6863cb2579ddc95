//! Cutting a fragmented MP4 back to its last complete fragment, after a write failed
//! midway (a full disk) or a process died: a box cut short, or a `moof` whose `mdat` never
//! arrived, would otherwise end the file with a damaged frame.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// The length of the longest prefix of `file` made of complete top-level boxes, not ending
/// with a `moof` (a fragment's header without its data).
pub fn complete_prefix(file: &mut (impl Read + Seek)) -> io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    let (mut at, mut good) = (0u64, 0u64);
    while at + 8 <= len {
        file.seek(SeekFrom::Start(at))?;
        let mut head = [0u8; 16];
        let n = if len - at >= 16 { 16 } else { 8 };
        file.read_exact(&mut head[..n])?;
        let size32 = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let size = match size32 {
            // to the end of the file
            0 => len - at,
            1 if n == 16 => {
                u64::from_be_bytes([head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15]])
            }
            s => s,
        };
        if size < 8 || size32 == 1 && n < 16 || at.checked_add(size).is_none_or(|end| end > len) {
            break;
        }
        // a moof counts only once its mdat is complete too
        good = if &head[4..8] == b"moof" { at } else { at + size };
        at += size;
    }
    Ok(good)
}

/// Truncates `path` to its complete prefix; the new length when it was cut.
pub fn trim_incomplete_tail(path: &Path) -> io::Result<Option<u64>> {
    let mut f = std::fs::File::options().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let good = complete_prefix(&mut f)?;
    if good >= len {
        return Ok(None);
    }
    f.set_len(good)?;
    f.sync_all()?;
    Ok(Some(good))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], body: usize) -> Vec<u8> {
        let mut b = ((body + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.resize(body + 8, 0xAB);
        b
    }

    fn prefix(bytes: &[u8]) -> u64 {
        complete_prefix(&mut std::io::Cursor::new(bytes)).unwrap()
    }

    #[test]
    fn a_fragment_cut_short_or_without_its_data_is_dropped() {
        let mut file =
            [mp4_box(b"ftyp", 16), mp4_box(b"moov", 100), mp4_box(b"moof", 40), mp4_box(b"mdat", 500)].concat();
        let whole = file.len() as u64;
        assert_eq!(prefix(&file), whole, "a complete file is kept whole");
        file.extend(mp4_box(b"moof", 40));
        assert_eq!(prefix(&file), whole, "a moof without its mdat");
        let mut cut = file.clone();
        cut.extend(&mp4_box(b"mdat", 500)[..300]);
        assert_eq!(prefix(&cut), whole, "an mdat cut short");
        file.extend(mp4_box(b"mdat", 500));
        file.extend(mp4_box(b"mfra", 30));
        assert_eq!(prefix(&file), file.len() as u64);
        assert_eq!(prefix(&file[..5]), 0);
        // a 64-bit size
        let mut large = 1u32.to_be_bytes().to_vec();
        large.extend_from_slice(b"mdat");
        large.extend_from_slice(&24u64.to_be_bytes());
        large.extend_from_slice(&[0; 8]);
        assert_eq!(prefix(&large), 24);
        assert_eq!(prefix(&large[..20]), 0);
    }
}
