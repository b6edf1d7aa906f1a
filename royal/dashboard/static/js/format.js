// How the dashboard writes numbers and times: short, and the same in every panel.

export function number(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

// Royal's APIs give ISO-8601 strings; stream summaries of jobs give epoch seconds.
export function toDate(value) {
  if (value === null || value === undefined) return null;
  return typeof value === "number" ? new Date(value * 1000) : new Date(value);
}

export function relative(date, now = Date.now()) {
  if (!date) return "–";
  const seconds = Math.round((date.getTime() - now) / 1000);
  const size = Math.abs(seconds);
  const [amount, unit] =
    size < 60 ? [seconds, "second"] : size < 3600 ? [Math.round(seconds / 60), "minute"]
      : size < 86400 ? [Math.round(seconds / 3600), "hour"] : [Math.round(seconds / 86400), "day"];
  return new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }).format(amount, unit);
}

export function clockTime(date) {
  return date ? date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "–";
}

// Build an element with attributes and children; text is always set as text, never as HTML.
export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.filter((child) => child !== null && child !== undefined));
  return element;
}
