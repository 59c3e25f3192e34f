/**
 * Hiding secrets wherever the conductor shows node data or errors: API output, what the ramdisk is sent,
 * last_error and log lines. Keys are masked at any depth (Ironic's mask_dict_password is recursive too), and
 * so is the userinfo of URLs (`http://user:pass@host/...`), which operators put into image_source or BMC addresses.
 */

export const MASK = '******';

/**
 * Key names whose values are secret: Ironic's password-like keys plus tokens, credentials, configdrive,
 * Authorization headers and `*_key` names (kg_key, private_key, api_key).
 */
export const SECRET_KEY_RE = /pass|secret|token|credential|configdrive|fernet|authori[sz]ation|private_key|(?:^|[_-])key$/i;

const URL_USERINFO_RE = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"']*@/gi;
const INLINE_SECRET_RE = /\b([A-Za-z_-]*(?:password|passwd|token|secret|authorization)["']?\s*[=:]\s*["']?)(?:(?:Basic|Bearer)\s+)?[^\s"'&,;]+/gi;
const MAX_DEPTH = 64;

export function isSecretKey(key: string): boolean {
  return SECRET_KEY_RE.test(key);
}

/** `scheme://user:pass@host` -> `scheme://******@host`; `password=x` / `agent_token=x` -> `...=******`. */
export function maskText(s: string): string {
  return s.replace(URL_USERINFO_RE, `$1${MASK}@`).replace(INLINE_SECRET_RE, `$1${MASK}`);
}

/** True when `s` would change under maskText (cheap pre-check for hot paths). */
export function hasTextSecret(s: string): boolean {
  URL_USERINFO_RE.lastIndex = 0;
  INLINE_SECRET_RE.lastIndex = 0;
  const r = URL_USERINFO_RE.test(s) || INLINE_SECRET_RE.test(s);
  URL_USERINFO_RE.lastIndex = 0;
  INLINE_SECRET_RE.lastIndex = 0;
  return r;
}

/**
 * A copy of `value` with secret-named keys masked at every depth and URL userinfo removed from strings.
 * Returns the same object when nothing needed masking (callers compare by identity to skip re-serialising).
 */
export function maskSecrets<T>(value: T, depth = 0): T {
  if (typeof value === 'string') return (hasTextSecret(value) ? maskText(value) : value) as T;
  if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    value.forEach((v, i) => {
      const m = maskSecrets(v, depth + 1);
      if (m !== v) { out ??= [...value]; out[i] = m; }
    });
    return (out ?? value) as T;
  }
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    // Flags such as agent_secret_token_pregenerated=true stay readable: only values that can carry a secret go.
    const m = isSecretKey(k) && v !== null && v !== undefined && v !== '' && typeof v !== 'boolean' ? MASK : maskSecrets(v, depth + 1);
    if (m !== v) {
      out ??= { ...(value as Record<string, unknown>) };
      out[k] = m;
    }
  }
  return (out ?? value) as T;
}

/** The secret values a node holds (secret-named keys at any depth in these dicts), for scrubbing free text. */
export function secretValues(...dicts: unknown[]): string[] {
  const out: string[] = [];
  const walk = (v: unknown, depth: number, secret: boolean): void => {
    if (depth > MAX_DEPTH) return;
    if (typeof v === 'string') { if (secret && v.length >= 4) out.push(v); return; }
    if (typeof v === 'number' && secret) { out.push(String(v)); return; }
    if (v && typeof v === 'object') {
      for (const [k, c] of Object.entries(v as Record<string, unknown>)) walk(c, depth + 1, secret || isSecretKey(k));
    }
  };
  for (const d of dicts) walk(d, 0, false);
  return out;
}

/** maskText plus every known secret value replaced (an error echoing a BMC password shows the mask instead). */
export function scrubText(s: string, secrets: readonly string[] = []): string {
  let out = maskText(s);
  for (const v of secrets) if (v && out.includes(v)) out = out.split(v).join(MASK);
  return out;
}
