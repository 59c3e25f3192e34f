/** Timestamps as Ironic renders them: ISO 8601, microseconds, explicit +00:00 (string order = time order). */
export function isoTime(d: Date = new Date()): string {
  return d.toISOString().replace(/Z$/, '000+00:00');
}
