// Money in the page is exact, as in the engine: the API's decimal strings become integers of 10^-28 (BigInt),
// are added as such, and are shown rounded half away from zero to 2 places. Never a JavaScript Number.

const SCALE = 28; // amounts have at most 20 places (shared/core/money.py: decimal128(38, 20)); 28 is room to spare

export function units(text: string): bigint | null {
  const m = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(text.trim());
  if (!m || (m[2] === "" && !m[3])) return null;
  const value = BigInt((m[2] || "0") + (m[3] ?? "").slice(0, SCALE).padEnd(SCALE, "0"));
  return m[1] === "-" ? -value : value;
}

export function formatUnits(value: bigint, places = 2): string {
  const step = 10n ** BigInt(SCALE - places);
  const size = value < 0n ? -value : value;
  const digits = ((size + step / 2n) / step).toString().padStart(places + 1, "0");
  const whole = digits.slice(0, digits.length - places).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const sign = value < 0n && /[1-9]/.test(digits) ? "-" : "";
  return `${sign}${whole}.${digits.slice(digits.length - places)}`;
}

/** value / max as a fraction for drawing (a bar's height), not for money. */
export function share(value: bigint, max: bigint): number {
  return max > 0n ? Number((value * 10_000n) / max) / 10_000 : 0;
}
