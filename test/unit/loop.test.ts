import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createLoopDevices } from '../fixtures/loop.js';
import { run } from '../../common/exec.js';

test('loop fixture attaches and detaches devices', async () => {
  const set = await createLoopDevices(2, 16);
  try {
    assert.equal(set.devices.length, 2);
    for (const d of set.devices) {
      assert.match(d.path, /^\/dev\/loop\d+$/);
      const size = await run('blockdev', ['--getsize64', d.path]);
      assert.equal(Number(size.stdout.trim()), 16 * 1024 * 1024);
    }
  } finally {
    await set.dispose();
  }
  const list = await run('losetup', ['-a']);
  for (const d of set.devices) assert.ok(!list.stdout.includes(d.backingFile));
  assert.ok(!existsSync(set.dir));
});
