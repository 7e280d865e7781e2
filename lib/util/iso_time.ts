/**
 * ISO 8601 UTC time from epoch milliseconds, computed without a `Date`.
 *
 * The agent stamps every log line with the time. `Date.prototype.toISOString`
 * brings resident pages into an idle agent that it otherwise never touches
 * (docs/PERFORMANCE.md, agent footprint); this arithmetic gives the same text.
 *
 * @module
 */

const DAY_MS = 86_400_000;
/** Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar. */
const EPOCH_SHIFT_DAYS = 719_468;
/** Days in a 400-year Gregorian era. */
const ERA_DAYS = 146_097;

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

/**
 * `new Date(ms).toISOString()` for times in years 0000 to 9999 (the same
 * text, `YYYY-MM-DDTHH:mm:ss.sssZ`); other times, and values that are not
 * whole milliseconds, go to `Date` itself, which also throws the same
 * `RangeError` for a time it cannot represent.
 *
 * @example
 * ```ts
 * import { isoTime } from "./iso_time.ts";
 * isoTime(0); // "1970-01-01T00:00:00.000Z"
 * isoTime(951_782_400_000); // "2000-02-29T00:00:00.000Z"
 * ```
 */
export function isoTime(ms: number): string {
  // -62167219200000 is 0000-01-01, 253402300800000 is 10000-01-01.
  if (!Number.isInteger(ms) || ms < -62_167_219_200_000 || ms >= 253_402_300_800_000) {
    return new Date(ms).toISOString();
  }
  const days = Math.floor(ms / DAY_MS);
  let rest = ms - days * DAY_MS;
  // Civil date from a day count, with years starting on 1 March so that
  // the leap day is the last day of a year.
  const z = days + EPOCH_SHIFT_DAYS;
  const era = Math.floor(z / ERA_DAYS);
  const dayOfEra = z - era * ERA_DAYS;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) -
      Math.floor(dayOfEra / (ERA_DAYS - 1))) / 365,
  );
  const dayOfYear = dayOfEra -
    (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const monthFromMarch = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * monthFromMarch + 2) / 5) + 1;
  const month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = Math.floor(rest / 1000);
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(hours, 2)}:${pad(minutes, 2)}:${
    pad(seconds, 2)
  }.${pad(rest - seconds * 1000, 3)}Z`;
}
