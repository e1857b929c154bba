// Exact decimal sums of the API's money strings ("12.345678"): BigInt scaled to the longest fraction, so the totals
// on the page are the API's to the last digit, never a float's rounding.

function parse(text) {
  const negative = text.startsWith("-");
  const [whole, fraction = ""] = text.replace(/^[-+]/, "").split(".");
  const units = BigInt((whole || "0") + fraction);
  return { units: negative ? -units : units, scale: fraction.length };
}

function scaled({ units, scale }, to) {
  return units * 10n ** BigInt(to - scale);
}

export function addDecimal(a, b) {
  const x = parse(String(a ?? "0"));
  const y = parse(String(b ?? "0"));
  const scale = Math.max(x.scale, y.scale);
  const sum = scaled(x, scale) + scaled(y, scale);
  const negative = sum < 0n;
  const digits = (negative ? -sum : sum).toString().padStart(scale + 1, "0");
  const whole = digits.slice(0, digits.length - scale);
  const fraction = digits.slice(digits.length - scale);
  return (negative ? "-" : "") + whole + (scale ? "." + fraction : "");
}

export function sumDecimals(values) {
  return values.reduce((total, value) => addDecimal(total, value), "0");
}

/** A number for the eye (charts' labels): two decimals, thousands grouped. */
export function short(value, digits = 2) {
  const n = Number(value);
  if (!Number.isFinite(n)) return "–";
  return n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}
