//! The rendition ladder: which resolutions a stream is transcoded to, how they are
//! written (`1080p,720p,480p`, `1280x720@30:3000k`), and how they are fitted to a source.
//!
//! Pure configuration; the encoding itself is in `transcode` (feature `libav`). The same
//! strings work on the command line, in TOML and through the server's API.

use std::fmt;
use std::str::FromStr;

/// How big a rendition is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RenditionSize {
    /// `720p`: the short side, in lines; the long side follows the source's aspect ratio
    /// (so a portrait phone stream gets 720 pixels of width).
    Lines(u32),
    /// `1280x720`: a box the picture is fitted into, aspect ratio kept.
    Box { width: u32, height: u32 },
}

/// One rung of the ladder, as configured.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rendition {
    pub size: RenditionSize,
    /// Frame-rate cap; `None` keeps the source's rate.
    pub fps: Option<u32>,
    /// Video bitrate; `None` takes the default for the size and frame rate.
    pub bitrate_kbps: Option<u32>,
}

impl Rendition {
    /// `1080p` at the source's frame rate and the default bitrate.
    pub const fn lines(lines: u32) -> Rendition {
        Rendition { size: RenditionSize::Lines(lines), fps: None, bitrate_kbps: None }
    }

    /// The name the rendition is known by: the stream `KEY@NAME`, the file `NAME.mp4`.
    pub fn name(&self) -> String {
        match (self.size, self.fps) {
            (RenditionSize::Lines(l), None) => format!("{l}p"),
            (RenditionSize::Lines(l), Some(fps)) => format!("{l}p{fps}"),
            (RenditionSize::Box { width, height }, None) => format!("{width}x{height}"),
            (RenditionSize::Box { width, height }, Some(fps)) => format!("{width}x{height}p{fps}"),
        }
    }
}

impl fmt::Display for Rendition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.size {
            RenditionSize::Lines(l) => write!(f, "{l}p")?,
            RenditionSize::Box { width, height } => write!(f, "{width}x{height}")?,
        }
        if let Some(fps) = self.fps {
            write!(f, "@{fps}")?;
        }
        if let Some(kbps) = self.bitrate_kbps {
            write!(f, ":{kbps}k")?;
        }
        Ok(())
    }
}

/// Largest side accepted in a rendition (8K).
const MAX_SIDE: u32 = 8192;

impl FromStr for Rendition {
    type Err = String;

    /// `720p`, `720p@60`, `1280x720`, `1280x720@30:3000k`, `480p:1.2M`, `360p:800`
    /// (a bare bitrate is in kbit/s).
    fn from_str(spec: &str) -> Result<Rendition, String> {
        let bad = |why: &str| format!("rendition {spec:?}: {why} (expected e.g. 720p, 720p@60, 1280x720@30:3000k)");
        let (head, bitrate) = match spec.trim().split_once(':') {
            Some((h, b)) => (h, Some(b)),
            None => (spec.trim(), None),
        };
        let (size, fps) = match head.split_once('@') {
            Some((s, f)) => (s, Some(f)),
            None => (head, None),
        };
        let size = if let Some(lines) = size.strip_suffix(['p', 'P']) {
            RenditionSize::Lines(lines.parse().map_err(|_| bad("the size is not a number of lines"))?)
        } else if let Some((w, h)) = size.split_once(['x', 'X']) {
            RenditionSize::Box {
                width: w.parse().map_err(|_| bad("the width is not a number"))?,
                height: h.parse().map_err(|_| bad("the height is not a number"))?,
            }
        } else {
            return Err(bad("unknown size"));
        };
        let sides = match size {
            RenditionSize::Lines(l) => [l, l],
            RenditionSize::Box { width, height } => [width, height],
        };
        if sides.iter().any(|&s| !(16..=MAX_SIDE).contains(&s)) {
            return Err(bad("sides must be between 16 and 8192 pixels"));
        }
        let fps = match fps {
            Some(f) => {
                let f: u32 = f.parse().map_err(|_| bad("the frame rate is not a whole number"))?;
                if !(1..=240).contains(&f) {
                    return Err(bad("the frame rate must be between 1 and 240"));
                }
                Some(f)
            }
            None => None,
        };
        let bitrate_kbps = match bitrate {
            Some(b) => Some(parse_kbps(b).ok_or_else(|| bad("the bitrate must look like 3000k, 3.5M or 3000"))?),
            None => None,
        };
        Ok(Rendition { size, fps, bitrate_kbps })
    }
}

/// `3000k`, `3000`, `3.5M` → kbit/s (between 50 kbit/s and 200 Mbit/s).
fn parse_kbps(s: &str) -> Option<u32> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix(['M', 'm']) {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix(['k', 'K']) {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().ok()?;
    let kbps = (v * scale).round();
    (50.0..=200_000.0).contains(&kbps).then_some(kbps as u32)
}

/// What to do with a rung above the source's resolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UpscalePolicy {
    /// Leave the rung out (a 720p source gets no 1080p rung).
    #[default]
    Skip,
    /// Scale up to the rung's size.
    Upscale,
}

impl FromStr for UpscalePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip" => Ok(UpscalePolicy::Skip),
            "upscale" => Ok(UpscalePolicy::Upscale),
            other => Err(format!("unknown upscale policy {other:?} (expected skip or upscale)")),
        }
    }
}

impl fmt::Display for UpscalePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpscalePolicy::Skip => "skip",
            UpscalePolicy::Upscale => "upscale",
        })
    }
}

/// The renditions a stream is transcoded to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ladder {
    pub renditions: Vec<Rendition>,
    pub upscale: UpscalePolicy,
}

impl Ladder {
    pub fn is_empty(&self) -> bool {
        self.renditions.is_empty()
    }

    /// The rendition called `name` (see [`Rendition::name`]).
    pub fn get(&self, name: &str) -> Option<&Rendition> {
        self.renditions.iter().find(|r| r.name() == name)
    }

    /// Fits every rung to a `width`×`height` source at `source_fps` frames per second.
    /// Rungs above the source are skipped or kept according to [`Ladder::upscale`].
    pub fn plan(&self, width: u32, height: u32, source_fps: Option<f64>) -> LadderPlan {
        let mut plan = LadderPlan::default();
        let (width, height) = (width.max(2), height.max(2));
        for r in &self.renditions {
            let (w, h) = fit(r.size, width, height);
            let above = w > width || h > height;
            if above && self.upscale == UpscalePolicy::Skip {
                plan.skipped.push(r.name());
                continue;
            }
            let fps = match (r.fps, source_fps) {
                (Some(cap), Some(src)) => f64::from(cap).min(src),
                (Some(cap), None) => f64::from(cap),
                (None, Some(src)) => src,
                (None, None) => 30.0,
            };
            plan.rungs.push(RungPlan {
                name: r.name(),
                width: w,
                height: h,
                fps_cap: r.fps,
                bitrate_kbps: r.bitrate_kbps.unwrap_or_else(|| default_bitrate_kbps(w.min(h), fps)),
            });
        }
        plan
    }
}

impl fmt::Display for Ladder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.renditions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for Ladder {
    type Err = String;

    /// Comma-separated renditions; an empty string is an empty ladder (no transcoding).
    fn from_str(s: &str) -> Result<Ladder, String> {
        let mut renditions: Vec<Rendition> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let r: Rendition = part.parse()?;
            if renditions.iter().any(|o| o.name() == r.name()) {
                return Err(format!("rendition {} is listed twice", r.name()));
            }
            renditions.push(r);
        }
        if renditions.len() > 8 {
            return Err("a ladder has at most 8 renditions".into());
        }
        Ok(Ladder { renditions, upscale: UpscalePolicy::Skip })
    }
}

/// One rung fitted to the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RungPlan {
    pub name: String,
    /// Output size (even).
    pub width: u32,
    pub height: u32,
    pub fps_cap: Option<u32>,
    pub bitrate_kbps: u32,
}

/// The outcome of [`Ladder::plan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LadderPlan {
    pub rungs: Vec<RungPlan>,
    /// Rungs left out because they are above the source.
    pub skipped: Vec<String>,
}

fn even(v: f64) -> u32 {
    let v = (v / 2.0).round() * 2.0;
    v.clamp(2.0, f64::from(MAX_SIDE)) as u32
}

/// The output size of `size` for a `sw`×`sh` source.
fn fit(size: RenditionSize, sw: u32, sh: u32) -> (u32, u32) {
    let (sw_f, sh_f) = (f64::from(sw), f64::from(sh));
    match size {
        RenditionSize::Lines(lines) => {
            let l = f64::from(lines);
            if sw >= sh { (even(sw_f * l / sh_f), even(l)) } else { (even(l), even(sh_f * l / sw_f)) }
        }
        RenditionSize::Box { width, height } => {
            let scale = (f64::from(width) / sw_f).min(f64::from(height) / sh_f);
            (even(sw_f * scale), even(sh_f * scale))
        }
    }
}

/// Default H.264 bitrates (kbit/s) by the short side, at up to 30 and above 30 frames per
/// second. From the platforms' published recommendations (YouTube, Facebook/OBS), see
/// docs/guide/transcoding.md.
const DEFAULT_BITRATES: [(u32, u32, u32); 7] = [
    (2160, 30_000, 35_000),
    (1440, 15_000, 24_000),
    (1080, 6_000, 9_000),
    (720, 3_500, 6_000),
    (480, 1_500, 2_500),
    (360, 800, 1_200),
    (0, 400, 600),
];

/// The default bitrate for a picture whose short side is `short_side` at `fps`.
pub fn default_bitrate_kbps(short_side: u32, fps: f64) -> u32 {
    let row = DEFAULT_BITRATES.iter().find(|(min, _, _)| short_side >= *min).unwrap_or(&DEFAULT_BITRATES[6]);
    if fps > 31.0 { row.2 } else { row.1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_renditions() {
        let l: Ladder = "1080p, 720p@60 ,480p:1.2M,1280x720@30:3000k".parse().expect("valid");
        assert_eq!(l.renditions.len(), 4);
        assert_eq!(l.renditions[1], Rendition { size: RenditionSize::Lines(720), fps: Some(60), bitrate_kbps: None });
        assert_eq!(l.renditions[2].bitrate_kbps, Some(1200));
        assert_eq!(
            l.renditions[3],
            Rendition {
                size: RenditionSize::Box { width: 1280, height: 720 },
                fps: Some(30),
                bitrate_kbps: Some(3000)
            }
        );
        let names: Vec<String> = l.renditions.iter().map(Rendition::name).collect();
        assert_eq!(names, ["1080p", "720p60", "480p", "1280x720p30"]);
        assert_eq!(l.to_string(), "1080p,720p@60,480p:1200k,1280x720@30:3000k");
        assert_eq!(l.to_string().parse::<Ladder>().expect("round trip"), l);
        assert!("".parse::<Ladder>().expect("empty").is_empty());
    }

    #[test]
    fn rejects_bad_renditions() {
        for bad in ["720", "p", "720p@0", "720p@x", "99999p", "8x8", "720p:fast", "720p:10", "1280x", "720p,720p"] {
            assert!(bad.parse::<Ladder>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn plans_sizes_keeping_aspect_and_skipping_upscales() {
        let l: Ladder = "1080p,720p,480p".parse().expect("valid");
        let plan = l.plan(1280, 720, Some(30.0));
        assert_eq!(plan.skipped, ["1080p"]);
        let sizes: Vec<(u32, u32, u32)> = plan.rungs.iter().map(|r| (r.width, r.height, r.bitrate_kbps)).collect();
        assert_eq!(sizes, [(1280, 720, 3500), (854, 480, 1500)]);

        let up = Ladder { upscale: UpscalePolicy::Upscale, ..l.clone() };
        let plan = up.plan(1280, 720, Some(30.0));
        assert!(plan.skipped.is_empty());
        assert_eq!((plan.rungs[0].width, plan.rungs[0].height, plan.rungs[0].bitrate_kbps), (1920, 1080, 6000));

        // Portrait: the short side is the width.
        let plan = l.plan(1080, 1920, Some(60.0));
        assert_eq!((plan.rungs[1].width, plan.rungs[1].height), (720, 1280));
        assert_eq!(plan.rungs[0].bitrate_kbps, 9000, "60 fps default");

        // 4:3 into a 16:9 box keeps 4:3.
        let boxed: Ladder = "1280x720@30".parse().expect("valid");
        let plan = boxed.plan(1440, 1080, Some(50.0));
        assert_eq!((plan.rungs[0].width, plan.rungs[0].height), (960, 720));
        assert_eq!(plan.rungs[0].fps_cap, Some(30));
        assert_eq!(plan.rungs[0].bitrate_kbps, 3500, "the capped rate picks the 30 fps default");
    }
}
