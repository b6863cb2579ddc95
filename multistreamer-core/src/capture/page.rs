//! The page in chromium: launched (headless, or in the capture's virtual display), the
//! capture script installed in every document it loads (so a reload or a navigation inside
//! the room keeps being watched), and what the script reports — chat items, the presenter's
//! rectangle, loads and unloads — delivered through a CDP binding (`Runtime.addBinding`),
//! with no polling from this side.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use headless_chrome::protocol::cdp::Page;
use headless_chrome::{Browser, LaunchOptions, Tab};

use super::CaptureError;
use super::events::{PageEvent, parse_payload};
use super::manifest::Selectors;

/// The binding the script calls.
pub(super) const BINDING: &str = "__multistreamerCapture";

/// The capture script: `CONFIG` is replaced by its JSON. It reports each chat item once (its
/// text as text, never as markup), the presenter's rectangle when it changes, a `hello` on
/// every document load and a `bye` when the page goes away.
const SCRIPT: &str = r#"(() => {
  const CFG = CONFIG;
  if (window.__msCaptureInstalled) return;
  window.__msCaptureInstalled = true;
  // what is sent before the binding exists (early in a new document) waits for it
  const queue = [];
  const flush = () => {
    const b = window[CFG.binding];
    if (typeof b !== "function") return false;
    while (queue.length) { try { b(queue[0]); } catch (e) { return false; } queue.shift(); }
    return true;
  };
  const send = (o) => { queue.push(JSON.stringify(o)); flush(); };
  const isTop = window === window.top;
  const clean = (s) => (s || "").replace(/^\s+|\s+$/g, "");
  const textOf = (el, sel) => { const n = sel ? el.querySelector(sel) : el; return n ? clean(n.textContent) : ""; };
  const hash = (s) => { let h = 2166136261; for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); } return (h >>> 0).toString(16); };
  const counts = new Map();
  const emit = (item) => {
    if (item.__msSeen) return;
    item.__msSeen = true;
    const author = textOf(item, CFG.author), text = textOf(item, CFG.text);
    if (!author && !text) return;
    let id = CFG.idAttr ? (item.getAttribute(CFG.idAttr) || "") : "";
    if (!id) { const k = author + "\n" + text; const n = (counts.get(k) || 0) + 1; counts.set(k, n); id = "h" + hash(k) + "-" + n; }
    send({ type: "chat", id, author, text, at: Date.now() });
  };
  let container = null, observer = null, lastRect = "", joined = false;
  // items: what the item selector matches inside the container, or its direct children
  const isItem = (n) => CFG.item ? n.matches(CFG.item) : n.parentElement === container;
  const itemsIn = (n) => CFG.item ? n.querySelectorAll(CFG.item) : (n === container ? n.children : []);
  const scan = () => {
    if (container && !container.isConnected) container = null;
    const c = container || (CFG.container ? document.querySelector(CFG.container) : null);
    if (c && c !== container) {
      container = c;
      if (observer) observer.disconnect();
      Array.from(itemsIn(c)).forEach(emit);
      observer = new MutationObserver((muts) => {
        for (const m of muts) for (const n of m.addedNodes) {
          if (n.nodeType !== 1) continue;
          if (isItem(n)) emit(n); else Array.from(itemsIn(n)).forEach(emit);
        }
      });
      observer.observe(c, { childList: true, subtree: true });
    }
  };
  const rect = () => {
    const el = CFG.presenter ? document.querySelector(CFG.presenter) : null;
    const r = el ? el.getBoundingClientRect() : { x: 0, y: 0, width: innerWidth, height: innerHeight };
    const d = devicePixelRatio || 1;
    const v = [Math.round(r.x * d), Math.round(r.y * d), Math.round(r.width * d), Math.round(r.height * d), el ? 1 : 0];
    const key = v.join(",");
    if (key !== lastRect) { lastRect = key; send({ type: "rect", x: v[0], y: v[1], w: v[2], h: v[3], found: !!el, at: Date.now() }); }
  };
  const join = () => {
    if (joined || !CFG.joinInput || !CFG.guestName) return;
    const input = document.querySelector(CFG.joinInput);
    if (!input) return;
    joined = true;
    const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set;
    set.call(input, CFG.guestName);
    input.dispatchEvent(new Event("input", { bubbles: true }));
    const submit = CFG.joinSubmit && document.querySelector(CFG.joinSubmit);
    if (submit) submit.click(); else if (input.form) input.form.requestSubmit();
  };
  const tick = () => { flush(); join(); scan(); if (isTop) rect(); };
  if (isTop) {
    send({ type: "hello", href: location.href, at: Date.now() });
    addEventListener("pagehide", () => send({ type: "bye", at: Date.now() }));
    // a heartbeat: the capture knows when it last heard from the page. Every 50 ms, because
    // the DevTools connection's reader sleeps 100 ms after a read that found nothing: a steady
    // trickle keeps it reading, so a chat item reaches the capture in milliseconds.
    setInterval(() => send({ type: "beat", at: Date.now() }), 50);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", tick); else tick();
  setInterval(tick, 200);
})();"#;

/// What the page needs to know.
#[derive(Debug, Clone)]
pub struct PageConfig {
    pub url: String,
    pub selectors: Selectors,
    pub viewport: (u32, u32),
    /// The virtual display to show the browser on; headless without one.
    pub display: Option<String>,
    pub chromium: std::path::PathBuf,
    pub guest_name: Option<String>,
    /// The name field and submit button of the room's join form, if it has one.
    pub join_input: String,
    pub join_submit: String,
}

/// A browser showing the page.
pub struct PageSession {
    // dropped after the tab: the browser process ends with it
    pub tab: Arc<Tab>,
    pub browser: Browser,
}

impl std::fmt::Debug for PageSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageSession").field("pid", &self.browser.get_process_id()).finish()
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// The capture script for `config`.
pub fn script(config: &PageConfig) -> String {
    let s = &config.selectors;
    let cfg = serde_json::json!({
        "binding": BINDING,
        "container": s.chat_container,
        "item": s.chat_item,
        "author": s.chat_author,
        "text": s.chat_text,
        "idAttr": s.chat_id_attribute,
        "presenter": s.presenter,
        "guestName": config.guest_name,
        "joinInput": config.join_input,
        "joinSubmit": config.join_submit,
    });
    SCRIPT.replacen("CONFIG", &cfg.to_string(), 1)
}

/// Launches chromium, installs the binding and the script, and opens the page. Every event
/// the script sends is passed to `events` (a payload that does not parse is dropped).
pub fn open(config: &PageConfig, events: Sender<PageEvent>) -> Result<PageSession, CaptureError> {
    let (w, h) = config.viewport;
    let mut args: Vec<String> = vec![
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-quic".into(),
        "--autoplay-policy=no-user-gesture-required".into(),
        "--mute-audio".into(),
        "--force-device-scale-factor=1".into(),
        "--hide-scrollbars".into(),
        "--disable-features=Translate,MediaRouter".into(),
        "--password-store=basic".into(),
    ];
    if config.display.is_some() {
        args.extend(["--kiosk".into(), "--window-position=0,0".into(), "--disable-infobars".into()]);
    }
    let os_args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let envs: Option<HashMap<String, String>> =
        config.display.as_ref().map(|d| HashMap::from([("DISPLAY".to_string(), d.clone())]));
    let options = LaunchOptions::default_builder()
        .path(Some(config.chromium.clone()))
        .headless(config.display.is_none())
        .sandbox(!running_as_root())
        .window_size(Some((w, h)))
        // a quiet page sends no events for a long time: the connection must stay open
        .idle_browser_timeout(Duration::from_secs(7 * 24 * 3600))
        .process_envs(envs)
        .args(os_args)
        .build()
        .map_err(|e| CaptureError::Browser(format!("launch options: {e}")))?;
    let browser = Browser::new(options).map_err(|e| CaptureError::Browser(format!("cannot start chromium: {e}")))?;
    let tab = browser.new_tab().map_err(|e| CaptureError::Browser(format!("no tab: {e}")))?;
    tab.set_default_timeout(Duration::from_secs(30));
    let binding = Arc::new(move |payload: serde_json::Value| {
        if let Some(ev) = payload.as_str().and_then(parse_payload) {
            let _ = events.send(ev);
        }
    });
    // bindings reach the page's contexts once the Runtime domain is on
    tab.enable_runtime().map_err(|e| CaptureError::Browser(format!("runtime: {e}")))?;
    tab.expose_function(BINDING, binding).map_err(|e| CaptureError::Browser(format!("binding: {e}")))?;
    tab.call_method(Page::AddScriptToEvaluateOnNewDocument {
        source: script(config),
        world_name: None,
        include_command_line_api: None,
        run_immediately: None,
    })
    .map_err(|e| CaptureError::Browser(format!("script: {e}")))?;
    tab.navigate_to(&config.url).map_err(|e| CaptureError::Page(format!("cannot open the page: {e}")))?;
    Ok(PageSession { tab, browser })
}

impl PageSession {
    /// Watches the browser from its own thread (a CDP round trip must not hold up the chat):
    /// `dead` is called once when it stops answering; the watch ends with `until`.
    pub fn watch(&self, until: Arc<std::sync::atomic::AtomicBool>, dead: impl FnOnce() + Send + 'static) {
        let tab = Arc::clone(&self.tab);
        let pid = self.browser.get_process_id();
        std::thread::spawn(move || {
            use std::sync::atomic::Ordering::Relaxed;
            let mut n = 0u32;
            while !until.load(Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                if until.load(Relaxed) {
                    return;
                }
                n += 1;
                let pid_alive = pid.is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists());
                // the process every second; a round trip (a hung renderer) every 10 s
                if !pid_alive || (n.is_multiple_of(10) && tab.evaluate("1", false).is_err()) {
                    if !until.load(Relaxed) {
                        dead();
                    }
                    return;
                }
            }
        });
    }
}
