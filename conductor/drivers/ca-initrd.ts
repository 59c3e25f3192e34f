/**
 * The API's CA certificate as an extra initrd: a tiny uncompressed cpio (newc) archive holding the PEM at
 * CA_PATH. The kernel unpacks every initrd the boot loader hands it into the same rootfs, in order, so this one
 * lands on top of the deploy ramdisk and the agent finds the file that `ipa-cafile=CA_PATH` names.
 */

/** Where the ramdisk finds the CA bundle for the conductor API. */
export const CA_PATH = '/etc/baremetal-ts/api-ca.pem';

interface Entry { name: string; mode: number; data?: Buffer }

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function header(e: Entry, ino: number, size: number): string {
  const hex = (n: number): string => n.toString(16).padStart(8, '0');
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
  return `070701${[ino, e.mode, 0, 0, e.mode & 0o040000 ? 2 : 1, 0, size, 0, 0, 0, 0, Buffer.byteLength(e.name) + 1, 0]
    .map(hex).join('')}`;
}

/** A newc archive of the given entries, ending with the TRAILER!!! record. */
export function newcArchive(entries: readonly Entry[]): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  const push = (b: Buffer): void => {
    parts.push(b);
    offset += b.length;
  };
  const all = [...entries, { name: 'TRAILER!!!', mode: 0 }];
  all.forEach((e, i) => {
    const data = e.data ?? Buffer.alloc(0);
    push(Buffer.from(`${header(e, e.name === 'TRAILER!!!' ? 0 : i + 1, data.length)}${e.name}\0`, 'latin1'));
    push(Buffer.alloc(pad4(offset)));
    if (data.length) {
      push(data);
      push(Buffer.alloc(pad4(offset)));
    }
  });
  return Buffer.concat(parts);
}

/** The CA initrd: parent directories, then the PEM file (0644, root-owned). */
export function caInitrd(pem: string): Buffer {
  const parts = CA_PATH.replace(/^\/+/, '').split('/');
  const dirs = parts.slice(0, -1).map((_, i) => ({ name: parts.slice(0, i + 1).join('/'), mode: 0o040755 }));
  return newcArchive([...dirs, { name: parts.join('/'), mode: 0o100644, data: Buffer.from(pem) }]);
}
