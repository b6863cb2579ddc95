// What a page leaves running (timers, live feeds, the player) is stopped when the next
// page is shown.

let cleanups = [];

/** Runs `fn` when the current page is left. */
export function onLeave(fn) { cleanups.push(fn); }

/** Repeats `fn` every `ms` while the page is shown. */
export function every(ms, fn) {
  const t = setInterval(fn, ms);
  onLeave(() => clearInterval(t));
}

/** Opens a server-sent event feed that closes with the page. */
export function feed(url) {
  const source = new EventSource(url);
  onLeave(() => source.close());
  return source;
}

export function leavePage() {
  const fns = cleanups; cleanups = [];
  fns.forEach((fn) => fn());
}

/** Shows the current route again (after a change that reshapes the page). */
export function rerender() { window.dispatchEvent(new HashChangeEvent("hashchange")); }
