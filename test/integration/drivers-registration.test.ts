import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import { startConductor } from '../../conductor/main.js';
import { IpmitoolPower } from '../../conductor/drivers/ipmitool.js';
import { RedfishManagement } from '../../conductor/drivers/redfish.js';
import { IpxeBoot } from '../../conductor/drivers/ipxe.js';

test('the conductor registers ipmi/redfish + ipxe and starts the boot server from config', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-drvreg-'));
  const c = await startConductor({
    port: 0, data_dir: dir, database: { backend: 'sqlite', sqlite_file: ':memory:' },
    boot: { http_root: join(dir, 'http'), tftp_root: join(dir, 'tftp'), http_url: 'http://10.0.2.100:8089', kernel_append_params: 'console=ttyS0' },
    power: { state_change_timeout: 7, soft_power_off_timeout: 9, ipmi_command_retry_timeout: 5, ipmi_min_command_interval: 0,
      redfish_connection_attempts: 2, redfish_connection_retry_interval: 1 },
  });
  try {
    const power = c.ctx.drivers.getInterfaceImpl('power', 'ipmitool');
    assert.ok(power instanceof IpmitoolPower);
    assert.equal(power.opts.commandRetryTimeoutS, 5);
    assert.equal(power.opts.powerStateChangeTimeoutS, 7);
    assert.ok(c.ctx.drivers.getInterfaceImpl('management', 'redfish') instanceof RedfishManagement);
    assert.ok(c.ctx.drivers.getInterfaceImpl('boot', 'ipxe') instanceof IpxeBoot);
    const fields = c.ctx.drivers.resolveInterfaceFields('ipmi', {});
    assert.equal(fields.power_interface, 'ipmitool');
    assert.equal(fields.boot_interface, 'ipxe');
    assert.equal(c.ctx.drivers.resolveInterfaceFields('redfish', {}).management_interface, 'redfish');
    // The defaults: https with the generated CA, http_basic with the generated admin password.
    const creds = c.createdCredentials;
    assert.ok(creds && c.caPem && c.url.startsWith('https://'));
    const res = await undiciFetch(`${c.url}/v1/drivers`, { dispatcher: new Agent({ connect: { ca: c.caPem } }),
      headers: { Authorization: `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`,
        'X-OpenStack-Ironic-API-Version': '1.78' } });
    const names = ((await res.json()) as { drivers: { name: string }[] }).drivers.map((d) => d.name);
    assert.ok(names.includes('ipmi') && names.includes('redfish'), names.join(','));
    const bs = c.ctx.bootServer;
    assert.ok(bs);
    assert.equal(bs.httpUrl, 'http://10.0.2.100:8089');
    const chain = await (await fetch(`${bs.localUrl}/boot.ipxe`)).text();
    assert.match(chain, /chain --autofree http:\/\/10\.0\.2\.100:8089\/pxelinux\.cfg\//);
    assert.match(await readFile(join(dir, 'tftp', 'boot.ipxe'), 'utf8'), /http:\/\/10\.0\.2\.100:8089\/boot\.ipxe/);
    await c.close();
    await assert.rejects(fetch(`${bs.localUrl}/boot.ipxe`), 'the boot server closed with the conductor');
  } finally {
    await c.close();
    await rm(dir, { recursive: true, force: true });
  }
});
