/**
 * Base error for everything we raise on purpose. `code` is a stable machine name (IPA's `type` or Ironic's
 * faultcode class name), `status` the HTTP status it maps to, `details` the human text. Each server turns these
 * into its wire error body in exactly one place.
 */
export class BaremetalError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: string;

  constructor(message: string, opts: { code?: string; status?: number; details?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = opts.code ?? new.target.name;
    this.code = opts.code ?? new.target.name;
    this.status = opts.status ?? 500;
    this.details = opts.details ?? message;
  }
}

/** A configuration value that is missing or malformed: reported once at start-up, never a stack trace. */
export class ConfigError extends BaremetalError {
  constructor(message: string) {
    super(message, { code: 'ConfigError', status: 400 });
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
