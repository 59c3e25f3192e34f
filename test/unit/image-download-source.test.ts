/** image_download_source resolution (instance_info > driver_info > config, legacy key) and the cache's checksum. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildConfig, type ConfigInput } from '../../conductor/config.js';
import type { ConductorContext } from '../../conductor/context.js';
import { expectedChecksum, imageDownloadSource } from '../../conductor/orchestration/image-source.js';

const ctxWith = (config: ConfigInput): ConductorContext => ({ config: buildConfig(config) }) as unknown as ConductorContext;
const node = (ii: Record<string, unknown> = {}, di: Record<string, unknown> = {}) => ({ instance_info: ii, driver_info: di });

test('default is http, as Ironic; agent.image_download_source sets it; the deprecated deploy key maps', () => {
  assert.equal(imageDownloadSource(ctxWith({}), node()), 'http');
  assert.equal(imageDownloadSource(ctxWith({ agent: { image_download_source: 'local' } }), node()), 'local');
  assert.equal(imageDownloadSource(ctxWith({ deploy: { image_download_source: 'http' } }), node()), 'local');
  assert.equal(imageDownloadSource(ctxWith({ deploy: { image_download_source: 'direct' } }), node()), 'http');
  assert.equal(imageDownloadSource(ctxWith({ agent: { image_download_source: 'http' }, deploy: { image_download_source: 'http' } }), node()), 'http');
});

test('instance_info wins over driver_info, which wins over the config; bad values are a 400', () => {
  const ctx = ctxWith({ agent: { image_download_source: 'http' } });
  assert.equal(imageDownloadSource(ctx, node({}, { image_download_source: 'local' })), 'local');
  assert.equal(imageDownloadSource(ctx, node({ image_download_source: 'swift' }, { image_download_source: 'local' })), 'swift');
  assert.throws(() => imageDownloadSource(ctx, node({ image_download_source: 'ftp' })), (e: unknown) => {
    assert.equal((e as { status?: number }).status, 400);
    assert.match(String(e), /Invalid value for image_download_source in instance_info: "ftp"\. Valid values are swift, http or local/);
    return true;
  });
  assert.throws(() => imageDownloadSource(ctx, node({}, { image_download_source: 7 })), /driver_info/);
  assert.throws(() => buildConfig({ agent: { image_download_source: 'direct' } } as Record<string, unknown>), /image_download_source/);
});

test('the checksum the cache verifies: os_hash first, then image_checksum', () => {
  const sha = 'a'.repeat(64);
  assert.deepEqual(expectedChecksum({ image_os_hash_algo: 'SHA256', image_os_hash_value: sha.toUpperCase(), image_checksum: 'b'.repeat(32) }),
    { algo: 'sha256', hex: sha });
  assert.deepEqual(expectedChecksum({ image_checksum: `sha512:${'c'.repeat(128)}` }), { algo: 'sha512', hex: 'c'.repeat(128) });
  assert.deepEqual(expectedChecksum({ image_checksum: 'd'.repeat(32) }), { algo: 'md5', hex: 'd'.repeat(32) });
  assert.throws(() => expectedChecksum({ image_os_hash_algo: 'sha1', image_os_hash_value: 'e'.repeat(40) }), /not supported/);
  assert.throws(() => expectedChecksum({ image_checksum: 'http://example.com/SHA256SUMS' }), /not an md5, sha256 or sha512/);
  assert.throws(() => expectedChecksum({}), /needs image_checksum/);
});

test('local: md5 is refused before any download unless allowed; the served checksum replaces the original', async () => {
  const { resolveImage } = await import('../../conductor/orchestration/image-source.js');
  const calls: unknown[] = [];
  const imageCache = { acquireForNode: async (_n: string, req: unknown) => {
    calls.push(req);
    return { url: 'http://c/agent_images/x', size: 1, served: { algo: 'sha256', hex: 'ab' }, diskFormat: 'raw' };
  } };
  const mk = (allowMd5: boolean) => ({ config: buildConfig({ agent: { image_download_source: 'local', allow_md5_checksum: allowMd5 } }),
    imageCache }) as unknown as ConductorContext;
  const n = { uuid: 'u', instance_info: { image_checksum: 'd'.repeat(32) }, driver_info: {} } as never;
  await assert.rejects(resolveImage(mk(false), n, 'http://o/img'), /md5 image checksums are not allowed/);
  assert.equal(calls.length, 0);
  const r = await resolveImage(mk(true), n, 'http://o/img');
  assert.equal(calls.length, 1);
  assert.deepEqual(r, { url: 'http://c/agent_images/x',
    imageInfo: { checksum: undefined, os_hash_algo: 'sha256', os_hash_value: 'ab', disk_format: 'raw' } });
});
