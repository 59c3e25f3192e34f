
test('with a boot server, node URLs are served under its guest-facing http_url', async () => {
  const { startBootServer } = await import('../../conductor/boot-server.js');
  const boot = await startBootServer({ httpRoot: join(dir, 'httpboot'), httpUrl: 'http://10.0.2.100:8080' });
  const states = new Map<string, string>([[uuidN(91), 'wait call-back']]);
  const cache = await ConductorImageCache.start(settings(join(dir, 'c11')), fakeStore(states), boot);
  try {
    const img = blobs.get('range.img')!;
    const { url } = await cache.acquireForNode(uuidN(91), { url: origin.url('range.img'),
      expected: { algo: 'sha256', hex: sha256(img) }, forceRaw: false });
    assert.ok(url.startsWith('http://10.0.2.100:8080/agent_images/'), url);
    const local = url.replace('http://10.0.2.100:8080', boot.localUrl);
    const part = await fetch(local, { headers: { Range: 'bytes=0-99' } });
    assert.equal(part.status, 206);
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(img.subarray(0, 100)));
    assert.equal(boot.requests.at(-1)?.status, 206, 'the boot server logged the request');
    states.set(uuidN(91), 'active');
    assert.equal((await fetch(local)).status, 404);
    assert.equal((await fetch(`${boot.localUrl}/agent_images/../master`)).status, 404);
  } finally {
    await cache.close();
    await boot.close();
  }
});
