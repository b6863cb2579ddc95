//! The chat panel: the visible messages laid out with cosmic-text (shaping, wrapping, font
//! fallback; colour emoji from the emoji font, tried first for emoji code points) into an
//! RGBA picture, redrawn only when the visible chat changes, converted once to YUV with
//! alpha and blended into each output frame.

use cosmic_text::{Attrs, Buffer, Color, Family, FontSystem, Metrics, Shaping, SwashCache, Weight, Wrap};

/// One message as the panel shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelMessage {
    pub author: String,
    pub text: String,
}

/// The name of the colour emoji font (Debian's `fonts-noto-color-emoji`).
const EMOJI_FAMILY: &str = "Noto Color Emoji";

/// Author colours: readable on the panel's dark background, told apart by a hash.
const AUTHOR_COLOURS: [(u8, u8, u8); 8] = [
    (0xff, 0xb3, 0x47),
    (0x7e, 0xc8, 0xff),
    (0x9c, 0xe6, 0x7a),
    (0xff, 0x8a, 0xb8),
    (0xd0, 0xa8, 0xff),
    (0x5f, 0xe0, 0xd0),
    (0xff, 0xe0, 0x66),
    (0xff, 0x9d, 0x7a),
];

fn author_colour(name: &str) -> Color {
    let h = name.bytes().fold(2_166_136_261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16_777_619));
    let (r, g, b) = AUTHOR_COLOURS[(h % AUTHOR_COLOURS.len() as u32) as usize];
    Color::rgb(r, g, b)
}

/// Whether `c` is drawn as an emoji (a picture) rather than text.
pub fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0x2300..=0x23FF
        | 0xFE0F | 0x200D | 0x20E3 | 0xE0020..=0xE007F)
}

/// Splits `text` into runs of emoji and of ordinary text: (run, is emoji). Joiners and
/// variation selectors stay with the emoji they belong to.
pub fn emoji_runs(text: &str) -> Vec<(&str, bool)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut current: Option<bool> = None;
    for (i, c) in text.char_indices() {
        let e = is_emoji(c) && !(c == '\u{200D}' || c == '\u{FE0F}' || c == '\u{20E3}') || {
            // a joiner or selector continues the run it is in
            (c == '\u{200D}' || c == '\u{FE0F}' || c == '\u{20E3}') && current == Some(true)
        };
        match current {
            Some(k) if k == e => {}
            Some(k) => {
                out.push((&text[start..i], k));
                start = i;
                current = Some(e);
            }
            None => current = Some(e),
        }
    }
    if let Some(k) = current {
        out.push((&text[start..], k));
    }
    out
}

/// An RGBA picture (straight alpha).
#[derive(Debug, Clone)]
pub struct Rgba {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Rgba {
    pub fn new(width: u32, height: u32, fill: [u8; 4]) -> Rgba {
        Rgba { width, height, data: fill.repeat((width * height) as usize) }
    }

    /// Draws `colour` over a rectangle (alpha-blended, clipped).
    fn blend_rect(&mut self, x: i32, y: i32, w: u32, h: u32, colour: Color) {
        let (cr, cg, cb, ca) =
            (u32::from(colour.r()), u32::from(colour.g()), u32::from(colour.b()), u32::from(colour.a()));
        if ca == 0 {
            return;
        }
        let x0 = x.max(0) as u32;
        let y0 = y.max(0) as u32;
        let x1 = (x + w as i32).clamp(0, self.width as i32) as u32;
        let y1 = (y + h as i32).clamp(0, self.height as i32) as u32;
        for yy in y0..y1 {
            for xx in x0..x1 {
                let i = ((yy * self.width + xx) * 4) as usize;
                let p = &mut self.data[i..i + 4];
                let (dr, dg, db, da) = (u32::from(p[0]), u32::from(p[1]), u32::from(p[2]), u32::from(p[3]));
                let inv = 255 - ca;
                let out_a = ca + da * inv / 255;
                if out_a == 0 {
                    continue;
                }
                p[0] = ((cr * ca + dr * da * inv / 255) / out_a) as u8;
                p[1] = ((cg * ca + dg * da * inv / 255) / out_a) as u8;
                p[2] = ((cb * ca + db * da * inv / 255) / out_a) as u8;
                p[3] = out_a as u8;
            }
        }
    }
}

/// Lays out and draws the chat.
pub struct ChatPanel {
    fonts: FontSystem,
    cache: SwashCache,
    width: u32,
    height: u32,
    font_size: f32,
    background: [u8; 4],
}

impl std::fmt::Debug for ChatPanel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatPanel").field("width", &self.width).field("height", &self.height).finish_non_exhaustive()
    }
}

impl ChatPanel {
    /// A panel of `width`×`height` with text of `font_size` pixels on `background` (RGBA).
    pub fn new(width: u32, height: u32, font_size: f32, background: [u8; 4]) -> ChatPanel {
        ChatPanel { fonts: FontSystem::new(), cache: SwashCache::new(), width, height, font_size, background }
    }

    /// Whether the system has the colour emoji font.
    pub fn has_emoji_font(&self) -> bool {
        self.fonts.db().faces().any(|f| f.families.iter().any(|(n, _)| n == EMOJI_FAMILY))
    }

    /// Draws `messages` (oldest first): the newest at the bottom, older ones above, as many
    /// as fit.
    pub fn draw(&mut self, messages: &[PanelMessage]) -> Rgba {
        let mut out = Rgba::new(self.width, self.height, self.background);
        let pad = (self.font_size * 0.6).round() as i32;
        let line_height = (self.font_size * 1.3).round();
        let text_w = self.width as f32 - 2.0 * pad as f32;
        let mut bottom = self.height as i32 - pad;
        let base = Attrs::new().family(Family::SansSerif);
        for m in messages.iter().rev() {
            if bottom <= pad {
                break;
            }
            let mut buffer = Buffer::new(&mut self.fonts, Metrics::new(self.font_size, line_height));
            buffer.set_wrap(Wrap::WordOrGlyph);
            buffer.set_size(Some(text_w.max(10.0)), None);
            let author = format!("{}  ", m.author);
            let mut spans: Vec<(&str, Attrs<'_>)> =
                vec![(author.as_str(), base.clone().color(author_colour(&m.author)).weight(Weight::BOLD))];
            for (run, emoji) in emoji_runs(&m.text) {
                let attrs = if emoji { base.clone().family(Family::Name(EMOJI_FAMILY)) } else { base.clone() };
                spans.push((run, attrs.color(Color::rgb(0xf2, 0xf2, 0xf2))));
            }
            buffer.set_rich_text(spans, &base, Shaping::Advanced, None);
            buffer.shape_until_scroll(&mut self.fonts, false);
            let lines = buffer.layout_runs().count().max(1) as f32;
            let h = (lines * line_height).ceil() as i32;
            let top = bottom - h;
            buffer.draw(&mut self.fonts, &mut self.cache, Color::rgb(0xf2, 0xf2, 0xf2), |x, y, w, hh, colour| {
                let yy = top + y;
                if yy >= pad / 2 {
                    out.blend_rect(pad + x, yy, w, hh, colour);
                }
            });
            bottom = top - (pad / 2).max(2);
        }
        out
    }
}

/// A picture in YUV 4:2:0 with alpha (BT.709, limited range), ready to blend into frames.
#[derive(Debug, Clone)]
pub struct Yuva {
    pub width: u32,
    pub height: u32,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
    /// Per luma sample.
    pub a: Vec<u8>,
    /// Per chroma sample (the mean of its 2×2 luma samples).
    pub ac: Vec<u8>,
}

impl Yuva {
    /// Converts an RGBA picture of even size.
    pub fn from_rgba(p: &Rgba) -> Yuva {
        let (w, h) = (p.width as usize, p.height as usize);
        let (cw, ch) = (w / 2, h / 2);
        let mut y = vec![16u8; w * h];
        let mut a = vec![0u8; w * h];
        let mut u = vec![128u8; cw * ch];
        let mut v = vec![128u8; cw * ch];
        let mut ac = vec![0u8; cw * ch];
        let px = |x: usize, yy: usize| {
            let i = (yy * w + x) * 4;
            (f32::from(p.data[i]), f32::from(p.data[i + 1]), f32::from(p.data[i + 2]), p.data[i + 3])
        };
        for yy in 0..h {
            for x in 0..w {
                let (r, g, b, al) = px(x, yy);
                y[yy * w + x] = (16.0 + 0.1826 * r + 0.6142 * g + 0.0620 * b).round() as u8;
                a[yy * w + x] = al;
            }
        }
        for cy in 0..ch {
            for cx in 0..cw {
                let (mut r, mut g, mut b, mut al) = (0.0, 0.0, 0.0, 0u32);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let (pr, pg, pb, pa) = px(cx * 2 + dx, cy * 2 + dy);
                    r += pr / 4.0;
                    g += pg / 4.0;
                    b += pb / 4.0;
                    al += u32::from(pa);
                }
                u[cy * cw + cx] = (128.0 - 0.1006 * r - 0.3386 * g + 0.4392 * b).round().clamp(16.0, 240.0) as u8;
                v[cy * cw + cx] = (128.0 + 0.4392 * r - 0.3989 * g - 0.0403 * b).round().clamp(16.0, 240.0) as u8;
                ac[cy * cw + cx] = (al / 4) as u8;
            }
        }
        Yuva { width: p.width, height: p.height, y, u, v, a, ac }
    }

    /// Blends plane `plane` (0: Y, 1: U, 2: V) into a frame's plane `dst` of `stride`, the
    /// picture's top-left corner at luma (`x`, `y`), both even.
    pub fn blend_plane(&self, plane: usize, dst: &mut [u8], stride: usize, x: usize, y: usize) {
        let (w, h) = (self.width as usize, self.height as usize);
        let (src, alpha, w, h, x, y) = match plane {
            0 => (&self.y, &self.a, w, h, x, y),
            1 => (&self.u, &self.ac, w / 2, h / 2, x / 2, y / 2),
            _ => (&self.v, &self.ac, w / 2, h / 2, x / 2, y / 2),
        };
        for row in 0..h {
            let d = &mut dst[(y + row) * stride + x..(y + row) * stride + x + w];
            let (s, al) = (&src[row * w..(row + 1) * w], &alpha[row * w..(row + 1) * w]);
            for ((d, &s), &a) in d.iter_mut().zip(s).zip(al) {
                if a == 255 {
                    *d = s;
                } else if a != 0 {
                    let a = u32::from(a);
                    *d = ((u32::from(s) * a + u32::from(*d) * (255 - a) + 127) / 255) as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_split_from_text_with_their_joiners() {
        assert_eq!(emoji_runs("hi 👍 there"), [("hi ", false), ("👍", true), (" there", false)]);
        assert_eq!(emoji_runs("👨‍👩‍👧 ok"), [("👨\u{200D}👩\u{200D}👧", true), (" ok", false)]);
        assert_eq!(emoji_runs("Привет"), [("Привет", false)]);
        assert_eq!(emoji_runs(""), []);
    }

    #[test]
    fn colour_emoji_and_cyrillic_are_drawn_not_boxes() {
        let mut panel = ChatPanel::new(400, 200, 28.0, [0, 0, 0, 255]);
        if !panel.has_emoji_font() {
            panic!("the colour emoji font is missing: install fonts-noto-color-emoji (scripts/deps.sh)");
        }
        fn coloured(p: &Rgba) -> usize {
            p.data
                .chunks_exact(4)
                .filter(|c| {
                    let (mx, mn) = (c[0].max(c[1]).max(c[2]), c[0].min(c[1]).min(c[2]));
                    mx - mn > 80
                })
                .count()
        }
        let emoji = panel.draw(&[PanelMessage { author: String::new(), text: "🎉".into() }]);
        // the party popper is drawn in colour (a tofu box would be grey)
        assert!(coloured(&emoji) > 100, "{} coloured pixels", coloured(&emoji));
        let text = panel.draw(&[PanelMessage { author: "Анна".into(), text: "Привет".into() }]);
        let lit = text.data.chunks_exact(4).filter(|c| c[0] > 128 && c[1] > 128 && c[2] > 128).count();
        assert!(lit > 100, "Cyrillic text drawn ({lit} light pixels)");
    }

    #[test]
    fn blending_keeps_opaque_pixels_and_mixes_translucent_ones() {
        let mut p = Rgba::new(4, 2, [255, 255, 255, 255]);
        p.data[4..8].copy_from_slice(&[0, 0, 0, 0]);
        let yuva = Yuva::from_rgba(&p);
        assert_eq!(yuva.y[0], 235, "white is Y 235 in limited range");
        let mut y = vec![16u8; 4 * 2];
        yuva.blend_plane(0, &mut y, 4, 0, 0);
        assert_eq!(&y[..4], &[235, 16, 235, 235], "a transparent pixel leaves the frame as it was");
    }
}
