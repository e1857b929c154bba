// UTC ranges as the API takes them: [from, to) in ISO 8601, never more than a day ahead of now (the API refuses that).

export const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

const DAY = 86400000;
const HOUR = 3600000;

function tomorrow() {
  const now = new Date();
  return Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1);
}

export function currentMonth() {
  return new Date().toISOString().slice(0, 7);
}

/** [first of the month, first of the next month or tomorrow, whichever is sooner) of "YYYY-MM". */
export function monthRange(month, monthsBefore = 0) {
  const [year, m] = month.split("-").map(Number);
  return {
    from: iso(Date.UTC(year, m - 1 - monthsBefore, 1)),
    to: iso(Math.min(Date.UTC(year, m, 1), tomorrow())),
  };
}

/** The last `days` days up to the start of the next hour. */
export function recent(days) {
  const to = Math.ceil(Date.now() / HOUR) * HOUR;
  return { from: iso(to - days * DAY), to: iso(to) };
}
