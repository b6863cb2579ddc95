//! The chat as ASS subtitles: for players that show soft subtitles, and for tools that burn
//! them in. Each message is an event from its time until a later message pushes it out of a
//! panel of `rows` lines (libass stacks events that overlap in time).

use crate::capture::chat::ChatLine;

fn timestamp(ms: i64) -> String {
    let ms = ms.max(0);
    let cs = ms / 10;
    format!("{}:{:02}:{:02}.{:02}", cs / 360_000, cs / 6000 % 60, cs / 100 % 60, cs % 100)
}

/// Text safe in an ASS event: no override blocks, no line breaks.
fn escape(s: &str) -> String {
    s.replace('\\', "\u{29F5}").replace('{', "(").replace('}', ")").replace(['\n', '\r'], " ")
}

/// An ASS script of `lines` for a `width`×`height` picture, the chat in a panel at
/// (`x`, `y`, `w`, `h`); times shifted by `shift_ms` (capture time to output time).
pub fn chat_to_ass(lines: &[ChatLine], size: (u32, u32), panel: (u32, u32, u32, u32), shift_ms: i64) -> String {
    let (width, height) = size;
    let (px, py, pw, ph) = panel;
    let font = (f64::from(height) / 38.0).round() as u32;
    let rows = (ph / (font * 3 / 2).max(1)).max(1) as usize;
    let mut out = format!(
        "[Script Info]\nScriptType: v4.00+\nPlayResX: {width}\nPlayResY: {height}\nWrapStyle: 0\n\n\
         [V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, \
         Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, \
         Alignment, MarginL, MarginR, MarginV, Encoding\n\
         Style: Chat,DejaVu Sans,{font},&H00F2F2F2,&H00F2F2F2,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,1,{ml},{mr},{mv},1\n\
         Style: Panel,DejaVu Sans,{font},&H001E1918,&H001E1918,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,0,0,7,0,0,0,1\n\n\
         [Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n",
        ml = px + font / 2,
        mr = width.saturating_sub(px + pw) + font / 2,
        mv = height.saturating_sub(py + ph) + font / 2,
    );
    let messages: Vec<&ChatLine> = lines.iter().filter(|l| l.kind == "message").collect();
    let end_of_all = messages.last().map_or(0, |l| l.t_ms as i64 + shift_ms) + 60_000;
    out.push_str(&format!(
        "Dialogue: 0,{},{},Panel,,0,0,0,,{{\\pos({px},{py})\\p1}}m 0 0 l {pw} 0 {pw} {ph} 0 {ph}{{\\p0}}\n",
        timestamp(0),
        timestamp(end_of_all)
    ));
    for (i, l) in messages.iter().enumerate() {
        let start = l.t_ms as i64 + shift_ms;
        let end = messages.get(i + rows).map_or(end_of_all, |n| n.t_ms as i64 + shift_ms);
        out.push_str(&format!(
            "Dialogue: 1,{},{},Chat,,0,0,0,,{{\\b1\\c&H47B3FF&}}{}{{\\b0\\c&HF2F2F2&}}  {}\n",
            timestamp(start),
            timestamp(end.max(start + 10)),
            escape(&l.author),
            escape(&l.text)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::chat::ChatSource;

    #[test]
    fn events_are_timed_and_escaped() {
        let line = |t_ms, text: &str| ChatLine {
            t_ms,
            at: String::new(),
            id: "1".into(),
            author: "Анна".into(),
            text: text.into(),
            source: ChatSource::Page,
            kind: "message".into(),
            target: None,
            src_time: None,
        };
        let ass = chat_to_ass(
            &[line(1500, "{\\b1}hi\nthere 🎉"), line(3_723_450, "x")],
            (1920, 1080),
            (1344, 324, 576, 756),
            500,
        );
        assert!(ass.contains("Dialogue: 1,0:00:02.00,"), "{ass}");
        assert!(ass.contains("Анна{\\b0\\c&HF2F2F2&}  (⧵b1)hi there 🎉"), "markup stays text: {ass}");
        assert!(ass.contains("1:02:03.95"), "{ass}");
    }
}
