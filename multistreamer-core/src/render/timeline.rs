//! Which chat messages are on screen at a time: the lines of `chat.jsonl` in time order,
//! deletions taking their message away, and messages that share one whole second (the
//! platforms' timestamps have a one-second precision) spread over that second instead of
//! arriving as a block.

use super::panel::PanelMessage;
use crate::capture::chat::{ChatLine, ChatSource};

/// The most messages kept on screen (the panel shows as many as fit).
const KEEP: usize = 60;

#[derive(Debug, Clone)]
enum Event {
    Show { id: String, message: PanelMessage },
    Remove { id: String },
}

/// The chat over time, read forward.
#[derive(Debug)]
pub struct Timeline {
    events: Vec<(i64, Event)>,
    next: usize,
    visible: Vec<(String, PanelMessage)>,
}

impl Timeline {
    pub fn new(mut lines: Vec<ChatLine>) -> Timeline {
        lines.sort_by_key(|l| l.t_ms);
        let mut times: Vec<i64> = lines.iter().map(|l| l.t_ms as i64).collect();
        // platform messages of the same whole second: spread evenly over it
        let mut i = 0;
        while i < lines.len() {
            let mut j = i + 1;
            while j < lines.len()
                && lines[j].t_ms == lines[i].t_ms
                && lines[j].source != ChatSource::Page
                && lines[i].source != ChatSource::Page
            {
                j += 1;
            }
            let n = (j - i) as i64;
            if n > 1 {
                for (k, t) in times[i..j].iter_mut().enumerate() {
                    *t += k as i64 * 1000 / n;
                }
            }
            i = j;
        }
        let events = lines
            .into_iter()
            .zip(times)
            .filter_map(|(l, t)| match l.kind.as_str() {
                "deleted" => l.target.map(|id| (t, Event::Remove { id })),
                "message" | "superchat" | "question" => {
                    Some((t, Event::Show { id: l.id, message: PanelMessage { author: l.author, text: l.text } }))
                }
                _ => None,
            })
            .collect();
        Timeline { events, next: 0, visible: Vec::new() }
    }

    /// The messages on screen at `t_ms` (capture time; times only move forward), oldest
    /// first, and a key that changes whenever they do.
    pub fn visible_at(&mut self, t_ms: i64) -> (u64, Vec<PanelMessage>) {
        while let Some((at, ev)) = self.events.get(self.next)
            && *at <= t_ms
        {
            match ev {
                Event::Show { id, message } => {
                    self.visible.push((id.clone(), message.clone()));
                    if self.visible.len() > KEEP {
                        self.visible.remove(0);
                    }
                }
                Event::Remove { id } => self.visible.retain(|(v, _)| v != id),
            }
            self.next += 1;
        }
        (self.next as u64, self.visible.iter().map(|(_, m)| m.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t_ms: u64, id: &str, source: ChatSource, kind: &str, target: Option<&str>) -> ChatLine {
        ChatLine {
            t_ms,
            at: String::new(),
            id: id.into(),
            author: "a".into(),
            text: format!("m{id}"),
            source,
            kind: kind.into(),
            target: target.map(String::from),
            src_time: None,
        }
    }

    #[test]
    fn messages_appear_at_their_time_deletions_remove_them_and_a_second_is_spread() {
        let mut t = Timeline::new(vec![
            line(5000, "3", ChatSource::Mtslink, "message", None),
            line(1000, "1", ChatSource::Page, "message", None),
            line(5000, "4", ChatSource::Mtslink, "message", None),
            line(5000, "5", ChatSource::Mtslink, "message", None),
            line(7000, "d", ChatSource::Youtube, "deleted", Some("1")),
        ]);
        let texts = |v: Vec<PanelMessage>| v.into_iter().map(|m| m.text).collect::<Vec<_>>();
        let (k0, v) = t.visible_at(999);
        assert!(v.is_empty());
        assert_eq!(texts(t.visible_at(1000).1), ["m1"]);
        assert_eq!(texts(t.visible_at(5000).1), ["m1", "m3"], "three in one second: the first at once");
        assert_eq!(texts(t.visible_at(5400).1), ["m1", "m3", "m4"], "the second a third of a second later");
        let (k1, v) = t.visible_at(6000);
        assert_eq!(texts(v), ["m1", "m3", "m4", "m5"]);
        assert_eq!(t.visible_at(6500).0, k1, "no change, same key");
        assert_ne!(k0, k1);
        assert_eq!(texts(t.visible_at(7000).1), ["m3", "m4", "m5"], "a deleted message leaves the screen");
    }
}
