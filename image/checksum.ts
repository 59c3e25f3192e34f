/**
 * Which checksum to verify an image against: os_hash_algo/os_hash_value first,
 * then the legacy `checksum` (algorithm by digest length); either value may be the URL of a checksums file.
 */
import { basename } from 'node:path';
import { ImageChecksumError, ImageDownloadError, AgentError } from '../protocol/agent-api.js';
import { fetchSmall, type DownloadAuth } from './download.js';
import { imageSettings } from './settings.js';

export type HashAlgo = 'md5' | 'sha256' | 'sha512';

export interface ExpectedChecksum {
  algo: HashAlgo;
  value: string;
}

const BY_LENGTH: Record<number, HashAlgo> = { 32: 'md5', 64: 'sha256', 128: 'sha512' };
const SUPPORTED = new Set<string>(['md5', 'sha256', 'sha512']);

export interface ChecksumSource {
  id: string;
  urls: string[];
  checksum?: string | null | undefined;
  os_hash_algo?: string | null | undefined;
  os_hash_value?: string | null | undefined;
}

const isUrl = (v: string): boolean => /^https?:\/\//i.test(v);

/** Longest line a checksums file may have: a 128-hex digest plus a path of PATH_MAX (4096) fits easily. */
export const MAX_CHECKSUM_LINE = 8192;

const isHexDigit = (c: number): boolean => (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);

function isHex(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!isHexDigit(s.charCodeAt(i))) return false;
  return true;
}

const isDigest = (s: string): boolean => (s.length === 32 || s.length === 64 || s.length === 128) && isHex(s);

const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 11 || c === 12 || c === 13;

/**
 * Split into trimmed non-empty lines, refusing any line over MAX_CHECKSUM_LINE before anything else looks at it.
 * Plain scans only (no regular expressions): time is linear in the file size whatever the content.
 */
function checksumLines(text: string): string[] {
  const lines: string[] = [];
  let start = 0;
  let n = 0;
  while (start < text.length) {
    let nl = text.indexOf('\n', start);
    if (nl < 0) nl = text.length;
    n++;
    if (nl - start > MAX_CHECKSUM_LINE) {
      throw new ImageDownloadError(`Invalid checksum file: line ${n} is longer than ${MAX_CHECKSUM_LINE} characters`);
    }
    const line = text.slice(start, nl).trim();
    if (line.length > 0) lines.push(line);
    start = nl + 1;
  }
  return lines;
}

/** GNU coreutils: `<hex> [*]<file>` (whitespace between; `*` marks binary mode). */
function gnuLine(line: string): { hex: string; file: string } | null {
  let i = 0;
  while (i < line.length && isHexDigit(line.charCodeAt(i))) i++;
  if (i === 0 || i >= line.length || !isSpace(line.charCodeAt(i))) return null;
  const hex = line.slice(0, i);
  while (i < line.length && isSpace(line.charCodeAt(i))) i++;
  if (line[i] === '*') i++;
  const file = line.slice(i).trim();
  return file.length > 0 ? { hex, file } : null;
}

/** BSD: `ALGO (<file>) = <hex>`; the file name holds no ')'. */
function bsdLine(line: string): { hex: string; file: string } | null {
  const eq = line.lastIndexOf('=');
  if (eq < 0) return null;
  const hex = line.slice(eq + 1).trim();
  const left = line.slice(0, eq).trimEnd();
  if (!left.endsWith(')')) return null;
  const close = left.length - 1;
  const open = left.indexOf('(', left.lastIndexOf(')', close - 1) + 1);
  if (open < 0 || open >= close - 1) return null;
  return { hex, file: left.slice(open + 1, close) };
}

/** Parse a checksums file: a bare digest, GNU `<hash> [*]<file>` lines or BSD `ALGO (<file>) = <hash>` lines. */
export function parseChecksumFile(text: string, imageUrl: string): string {
  const lines = checksumLines(text);
  if (lines.length === 1 && !/\s/.test(lines[0]!)) {
    if (isDigest(lines[0]!)) return lines[0]!;
    throw new ImageDownloadError(`Invalid checksum file (not a hex digest): ${lines[0]!.slice(0, 80)}`);
  }
  const name = basename(new URL(imageUrl).pathname);
  for (const line of lines) {
    if (line.startsWith('#')) continue;
    const gnu = gnuLine(line);
    if (gnu && basename(gnu.file) === name && isDigest(gnu.hex)) return gnu.hex;
    const bsd = bsdLine(line);
    if (bsd && basename(bsd.file) === name && isDigest(bsd.hex)) return bsd.hex;
  }
  throw new ImageDownloadError(`Checksum file does not contain name ${name}`);
}

async function resolveValue(value: string, info: ChecksumSource, auth: DownloadAuth | undefined): Promise<string> {
  if (!isUrl(value)) return value.trim();
  const body = await fetchSmall(value, 4 * 1024 * 1024, { imageId: info.id, ...(auth ? { auth } : {}) });
  return parseChecksumFile(body.toString('utf8'), info.urls[0] ?? value);
}

/** Synchronous validation (IPA's _validate_image_info checksum part): throws InvalidCommandParamsError text. */
export function checksumPresenceError(info: ChecksumSource): string | null {
  const hasPair = Boolean(info.os_hash_algo) && Boolean(info.os_hash_value);
  if ((info.os_hash_algo || info.os_hash_value) && !hasPair) {
    return 'Image checksum is not available, either the \'checksum\' field or the \'os_hash_algo\' and \'os_hash_value\' fields pair must be set for image verification.';
  }
  if (hasPair) return null;
  const c = info.checksum;
  if (typeof c === 'string' && c.length > 0) {
    if (isUrl(c) || c.length > 32 || (c.length === 32 && imageSettings().md5Enabled)) return null;
  }
  return 'Image checksum is not available, either the \'checksum\' field or the \'os_hash_algo\' and \'os_hash_value\' fields pair must be set for image verification.';
}

export async function expectedChecksum(info: ChecksumSource, auth?: DownloadAuth): Promise<ExpectedChecksum> {
  const algoRaw = info.os_hash_algo?.toLowerCase();
  if (algoRaw && info.os_hash_value && SUPPORTED.has(algoRaw)) {
    const value = await resolveValue(info.os_hash_value, info, auth);
    return { algo: algoRaw as HashAlgo, value };
  }
  if (info.checksum) {
    const value = await resolveValue(info.checksum, info, auth);
    const algo = BY_LENGTH[value.length];
    if (!algo) {
      throw new AgentError(
        'RESTError',
        500,
        'An error occurred',
        `Unable to proceed with image ${info.id} as the checksum algorithm could not be identified based upon the checksum provided.`,
      );
    }
    if (algo === 'md5' && !imageSettings().md5Enabled) {
      throw new AgentError('RESTError', 500, 'An error occurred', `MD5 checksums are disabled; image ${info.id}`);
    }
    return { algo, value };
  }
  throw new AgentError(
    'RESTError',
    500,
    'An error occurred',
    `Unable to verify image ${info.id} with available checksums. Please make sure the specified 'os_hash_algo' (currently ${info.os_hash_algo ?? 'None'}) is supported by this ramdisk, or provide a md5 checksum via the 'checksum' field`,
  );
}

export function checksumMismatch(location: string, id: string, expected: string, actual: string): AgentError {
  return new ImageChecksumError(
    `Image failed to verify against checksum. location: ${location}; image ID: ${id}; image checksum: ${expected}; verification checksum: ${actual}`,
  );
}
