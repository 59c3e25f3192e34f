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

/** Parse a checksums file: a bare digest, GNU `<hash> [*]<file>` lines or BSD `ALGO (<file>) = <hash>` lines. */
export function parseChecksumFile(text: string, imageUrl: string): string {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  const hexRe = /^([0-9a-fA-F]{32}|[0-9a-fA-F]{64}|[0-9a-fA-F]{128})$/;
  if (lines.length === 1 && !/\s/.test(lines[0]!)) {
    if (hexRe.test(lines[0]!)) return lines[0]!;
    throw new ImageDownloadError(`Invalid checksum file (not a hex digest): ${lines[0]!.slice(0, 80)}`);
  }
  const name = basename(new URL(imageUrl).pathname);
  for (const line of lines) {
    if (line.startsWith('#')) continue;
    const gnu = /^([0-9a-fA-F]+)\s+\*?(.+)$/.exec(line);
    if (gnu && basename(gnu[2]!.trim()) === name && hexRe.test(gnu[1]!)) return gnu[1]!;
    const bsd = /\(([^)]+)\)\s*=\s*([0-9a-fA-F]+)$/.exec(line);
    if (bsd && basename(bsd[1]!) === name && hexRe.test(bsd[2]!)) return bsd[2]!;
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
