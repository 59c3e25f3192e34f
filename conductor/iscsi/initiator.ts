/**
 * The conductor's iSCSI initiator: QEMU's user-space libiscsi block driver (`qemu-img`, package qemu-block-extra),
 * so no kernel initiator, no iscsid and no root-only session state on the conductor host.
 *
 * The CHAP secret never appears in argv or logs: qemu-img reads it from a 0600 file in a 0700 temp dir through
 * `--object secret,id=…,file=…` and the iscsi driver's `password-secret=` option (an `iscsi://user%secret@…`
 * URL would put it in argv, where the exec log and /proc/<pid>/cmdline show it).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../common/exec.js';

export interface IscsiTarget {
  host: string;
  port: number;
  iqn: string;
  lun: number;
  username: string;
  password: string;
}

export type DigestAlgo = 'md5' | 'sha256' | 'sha512';

/** Ironic's iqn form for a node, made unique per deploy attempt so a stale session can never hit a new target. */
export function newIqn(nodeUuid: string): string {
  return `iqn.2008-10.org.openstack:${nodeUuid}.${randomBytes(4).toString('hex')}`;
}

/** A CHAP secret of 24 random bytes (32 characters; CHAP wants 12-16+ and tgt takes up to 255). */
export function newChapSecret(): string {
  return randomBytes(24).toString('base64url');
}

/** A CHAP user name per node: not secret, only tells targets apart in tgtadm's account list. */
export function chapUsername(nodeUuid: string): string {
  return `bmts-${nodeUuid.slice(0, 8)}`;
}

/** QEMU's option syntax doubles commas inside values. */
const q = (v: string): string => v.replace(/,/g, ',,');

function portal(t: Pick<IscsiTarget, 'host' | 'port'>): string {
  return `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}

/** `--image-opts` for the target's LUN; the password is only named by the secret object's id. */
export function iscsiImageOpts(t: Omit<IscsiTarget, 'password'>, secretId: string): string {
  return [
    'driver=iscsi', 'transport=tcp', `portal=${q(portal(t))}`, `target=${q(t.iqn)}`, `lun=${t.lun}`,
    `user=${q(t.username)}`, `password-secret=${q(secretId)}`,
  ].join(',');
}

/** The target as a URL for logs and last_error: user but never the secret. */
export function iscsiDisplayUrl(t: Omit<IscsiTarget, 'password'>): string {
  return `iscsi://${encodeURIComponent(t.username)}@${portal(t)}/${t.iqn}/${t.lun}`;
}

/** Runs `fn` with a secret object argument pair pointing at a private file holding the password. */
async function withSecret<T>(password: string, fn: (objectArgs: string[], secretId: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-iscsi-'));
  try {
    await chmod(dir, 0o700);
    const file = join(dir, 'chap');
    await writeFile(file, password, { mode: 0o600 });
    const id = 'chap0';
    return await fn(['--object', `secret,id=${id},file=${q(file)}`], id);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Turns qemu-img's libiscsi errors into what an operator reads in last_error. */
export function explainIscsiError(t: Omit<IscsiTarget, 'password'>, stderr: string): string {
  const where = iscsiDisplayUrl(t);
  // qemu-img quotes the option string first ("Could not open 'driver=iscsi,…'"): only libiscsi's words count.
  const said = stderr.replace(/'[^']*'/g, "'…'");
  if (/Authentication failure/i.test(said)) return `iSCSI login to ${where} was refused (CHAP authentication failed)`;
  if (/Failed to connect|Connection refused|reconnect|No route|timed out/i.test(said)) {
    return `could not reach the iSCSI target ${where}: ${lastLine(said)}`;
  }
  return `iSCSI I/O with ${where} failed: ${lastLine(said)}`;
}

function lastLine(s: string): string {
  return s.trim().split('\n').filter(Boolean).at(-1) ?? 'no error output';
}

export class IscsiIoError extends Error {}

async function qemuImg(t: IscsiTarget, build: (objectArgs: string[], opts: string) => string[], timeoutMs: number):
  Promise<void> {
  await withSecret(t.password, async (objectArgs, id) => {
    try {
      await run('qemu-img', build(objectArgs, iscsiImageOpts(t, id)), { timeoutMs });
    } catch (e) {
      const stderr = (e as { stderr?: unknown }).stderr;
      throw new IscsiIoError(explainIscsiError(t, typeof stderr === 'string' ? stderr : String(e)));
    }
  });
}

/** Writes a raw image file onto the LUN (which must be at least as big). */
export async function writeRawImage(t: IscsiTarget, rawFile: string, timeoutMs: number): Promise<void> {
  await qemuImg(t, (obj, opts) => ['convert', '-n', ...obj, '-f', 'raw', rawFile, '--target-image-opts', opts], timeoutMs);
}

/** Largest power of two up to 1 MiB dividing n (n a multiple of 512): qemu-img dd's block size for n bytes. */
export function readBlockSize(n: number): number {
  let bs = 1024 * 1024;
  while (bs > 512 && n % bs !== 0) bs /= 2;
  return bs;
}

/**
 * Reads the first `bytes` bytes of the LUN back (into a temp file: qemu-img dd cannot write to a pipe) and
 * returns their digest. Reads whole 512-byte sectors; the digest covers exactly `bytes`.
 */
export async function readBackDigest(t: IscsiTarget, bytes: number, algo: DigestAlgo, timeoutMs: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-iscsi-read-'));
  try {
    const out = join(dir, 'readback.raw');
    const sectors = Math.ceil(bytes / 512) * 512;
    const bs = readBlockSize(sectors);
    await qemuImg(t, (obj, opts) => ['dd', ...obj, '--image-opts', '-O', 'raw', `bs=${bs}`, `count=${sectors / bs}`,
      `if=${opts}`, `of=${out}`], timeoutMs);
    return await fileDigest(out, algo, bytes);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Digest of a file's first `limit` bytes (all of it without a limit). */
export async function fileDigest(path: string, algo: DigestAlgo, limit?: number): Promise<string> {
  const h = createHash(algo);
  const stream = createReadStream(path, limit !== undefined ? { start: 0, end: limit - 1 } : {});
  for await (const chunk of stream) h.update(chunk as Buffer);
  return h.digest('hex');
}
