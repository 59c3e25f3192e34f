/**
 * A filesystem mounted for a moment (the agent's boot loader steps, tests reading what was written), so that the
 * unmount really releases the device.
 *
 * With a private root mount (Debian hosts in containers, most initramfs roots), a mount namespace created while the
 * filesystem is mounted (`ip netns exec`, libvirt's per-domain namespace, any unshare) keeps a private copy of it:
 * after our umount the device stays busy until that process exits, and the next O_EXCL open (blkdiscard, mkfs) fails
 * with EBUSY. The filesystem is therefore mounted on a shared bind of its own mount point: copies made meanwhile join
 * the peer group (or become its slaves) and receive the unmount, as do mounts stacked under it.
 */
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../common/exec.js';

export interface MountOptions {
  /** mount -o options, e.g. 'ro'. */
  options?: string;
  /** Where the temporary mount point is made (default: the temp directory). */
  parent?: string;
}

/** umount; a busy mount falls back to a lazy unmount (the caller's outcome matters more than a leftover mount). */
export const unmount = (dir: string): Promise<unknown> =>
  run('umount', [dir], { timeoutMs: 30_000 }).catch(() => run('umount', ['-l', dir]).catch(() => undefined));

/** Mount `device` on a new temporary directory, run `fn` with it, unmount and remove the directory. */
export async function withMount<T>(device: string, fn: (dir: string) => Promise<T>, opts: MountOptions = {}): Promise<T> {
  const dir = await fsp.mkdtemp(join(opts.parent ?? tmpdir(), 'bmts-mnt-'));
  try {
    await run('mount', ['--bind', dir, dir]);
    try {
      await run('mount', ['--make-shared', dir]);
      await run('mount', [...(opts.options ? ['-o', opts.options] : []), device, dir], { timeoutMs: 30_000 });
      try {
        return await fn(dir);
      } finally {
        await unmount(dir);
      }
    } finally {
      await unmount(dir);
    }
  } finally {
    await fsp.rmdir(dir).catch(() => undefined); // an empty temp directory; a leftover is harmless
  }
}
