/** ephemeral_format allow-list (issue 13): only known filesystems become an mkfs program, each with its own label flag. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EPHEMERAL_FORMATS, ephemeralMkfs } from '../../block/partition.js';
import { DeploymentError } from '../../protocol/agent-api.js';

test('allowed formats map to their mkfs with the right label flag; default ext4', () => {
  assert.deepEqual(ephemeralMkfs(null, '/dev/x3'), { program: 'mkfs.ext4', args: ['-F', '-L', 'ephemeral0', '/dev/x3'] });
  assert.deepEqual(ephemeralMkfs('xfs', '/dev/x3'), { program: 'mkfs.xfs', args: ['-f', '-L', 'ephemeral0', '/dev/x3'] });
  assert.deepEqual(ephemeralMkfs('vfat', '/dev/x3'), { program: 'mkfs.vfat', args: ['-n', 'EPHEMERAL0', '/dev/x3'] });
  for (const f of EPHEMERAL_FORMATS) assert.equal(ephemeralMkfs(f, '/dev/x3').program, `mkfs.${f}`);
});

test('anything else is a DeploymentError naming the allowed formats', () => {
  for (const f of ['', 'EXT4', 'ext4 ', 'btrfs', 'swap', 'ext4;reboot', '$(touch /tmp/x)', 'ext4\n', 'x'.repeat(10_000)]) {
    assert.throws(() => ephemeralMkfs(f, '/dev/x3'), (e: unknown) =>
      e instanceof DeploymentError && /^Unsupported ephemeral_format .*expected one of ext2, ext3, ext4/.test(e.details), JSON.stringify(f.slice(0, 20)));
  }
});
