import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildConfig,
  configFromFlags,
  loadConfig,
  normaliseMac,
  parseArgs,
  parseCmdline,
  type AgentConfig,
} from '../../agent/config.js';
import { ConfigError } from '../../common/errors.js';

const fromCmdline = (line: string): AgentConfig => buildConfig([parseCmdline(line)]);

interface Case {
  name: string;
  line: string;
  expect: Partial<AgentConfig>;
}

const REQ = 'req-8c1fe7c5-3d2a-4a55-9d61-1f4b2f6a3e10';

const good: Case[] = [
  {
    name: 'Ironic iPXE template (BOOTIF from ${mac})',
    line:
      `nofb nomodeset vga=normal console=ttyS0 ipa-api-url=http://10.0.2.100:6385 BOOTIF=52:54:00:12:34:56 ` +
      `ipa-global-request-id=${REQ} coreos.configdrive=0 initrd=deploy_ramdisk`,
    expect: {
      apiUrls: ['http://10.0.2.100:6385'],
      bootif: '52:54:00:12:34:56',
      globalRequestId: REQ,
      listenPort: 9999,
      advertisePort: 9999,
      enableAutoTls: true,
      debug: false,
      lookupTimeoutS: 600,
      lookupIntervalS: 1,
    },
  },
  {
    name: 'pxelinux append line (BOOTIF 01-.. form, ipa-debug=1)',
    line:
      'initrd=deploy_ramdisk selinux=0 troubleshoot=0 text nofb nomodeset vga=normal ' +
      'ipa-api-url=http://192.168.24.1:6385 ipa-debug=1 coreos.configdrive=0 BOOTIF=01-52-54-00-AB-CD-EF',
    expect: { apiUrls: ['http://192.168.24.1:6385'], bootif: '52:54:00:ab:cd:ef', debug: true },
  },
  {
    name: 'host cmdline without any ipa key',
    line: 'BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=UUID=0b6c3c6e-0000-4000-8000-000000000000 ro quiet',
    expect: { apiUrls: [], bootif: null, agentToken: null, deviceAllowlist: null },
  },
  {
    name: 'comma list of API URLs, trailing slash dropped',
    line: 'ipa-api-url=http://a.example:6385/,https://b.example:6385',
    expect: { apiUrls: ['http://a.example:6385', 'https://b.example:6385'] },
  },
  {
    name: 'listen/advertise keys and lookup timings',
    line:
      'ipa-listen-host=127.0.0.1 ipa-listen-port=10999 ipa-advertise-host=127.0.0.1 ' +
      'ipa-lookup-timeout=30 ipa-lookup-interval=0.2',
    expect: {
      listenHost: '127.0.0.1',
      listenPort: 10999,
      advertiseHost: '127.0.0.1',
      advertisePort: 10999,
      lookupTimeoutS: 30,
      lookupIntervalS: 0.2,
    },
  },
  {
    name: 'explicit advertise port differs from listen port',
    line: 'ipa-listen-port=9999 ipa-advertise-port=19999',
    expect: { listenPort: 9999, advertisePort: 19999 },
  },
  {
    name: 'booleans in every spelling',
    line: 'ipa-insecure=True ipa-standalone=yes ipa-enable-auto-tls=0 ipa-debug=off',
    expect: { insecure: true, standalone: true, enableAutoTls: false, debug: false },
  },
  {
    name: 'quoted value with spaces (kernel drops the quotes)',
    line: 'console=ttyS0 ipa-cafile="/etc/my ca.pem" "ipa-log-file=/tmp/a b.log" quiet',
    expect: { cafile: '/etc/my ca.pem', logFile: '/tmp/a b.log' },
  },
  {
    name: 'value containing = splits at the first one',
    line: 'ipa-agent-token=abc=def==',
    expect: { agentToken: 'abc=def==' },
  },
  {
    name: 'device allow-list and hardware managers',
    line:
      'ipa-device-allowlist=/dev/loop3,/dev/loop4 ipa-hardware-manager-dir=/opt/hm ' +
      'ipa-hardware-managers=@acme/hm,other-hm',
    expect: {
      deviceAllowlist: ['/dev/loop3', '/dev/loop4'],
      hardwareManagerDir: '/opt/hm',
      hardwareManagers: ['@acme/hm', 'other-hm'],
    },
  },
  {
    name: 'unknown keys and bare words are ignored',
    line: 'ipa-frobnicate=7 ipa-collect-lldp=1 splash root=/dev/ram0 rd.shell',
    expect: { apiUrls: [], listenPort: 9999 },
  },
  {
    name: 'tabs and newline from /proc/cmdline',
    line: 'ipa-api-url=http://127.0.0.1:6385\tipa-listen-port=9998\n',
    expect: { apiUrls: ['http://127.0.0.1:6385'], listenPort: 9998 },
  },
];

for (const c of good) {
  test(`cmdline: ${c.name}`, () => {
    const cfg = fromCmdline(c.line);
    for (const [k, v] of Object.entries(c.expect)) {
      assert.deepEqual(cfg[k as keyof AgentConfig], v, `key ${k}`);
    }
  });
}

const bad: { name: string; line: string; key: string }[] = [
  { name: 'port not a number', line: 'ipa-listen-port=abc', key: 'ipa-listen-port' },
  { name: 'port out of range', line: 'ipa-listen-port=70000', key: 'ipa-listen-port' },
  { name: 'advertise port zero', line: 'ipa-advertise-port=0', key: 'ipa-advertise-port' },
  { name: 'api url not http', line: 'ipa-api-url=ftp://x', key: 'ipa-api-url' },
  { name: 'api url mdns unsupported', line: 'ipa-api-url=mdns', key: 'ipa-api-url' },
  { name: 'one bad url in a list', line: 'ipa-api-url=http://ok:6385,nonsense', key: 'ipa-api-url' },
  { name: 'bool nonsense', line: 'ipa-insecure=maybe', key: 'ipa-insecure' },
  { name: 'negative timeout', line: 'ipa-lookup-timeout=-5', key: 'ipa-lookup-timeout' },
  { name: 'BOOTIF garbage', line: 'BOOTIF=01-zz-54-00-12-34-56', key: 'BOOTIF' },
  { name: 'BOOTIF too short', line: 'BOOTIF=52:54:00:12:34', key: 'BOOTIF' },
  { name: 'allow-list entry not under /dev', line: 'ipa-device-allowlist=/dev/loop3,sda', key: 'ipa-device-allowlist' },
  { name: 'request id without req- prefix', line: 'ipa-global-request-id=8c1fe7c5', key: 'ipa-global-request-id' },
  { name: 'empty listen host', line: 'ipa-listen-host=', key: 'ipa-listen-host' },
  { name: 'api version not 1.x', line: 'ipa-ironic-api-version=latest', key: 'ipa-ironic-api-version' },
];

for (const c of bad) {
  test(`cmdline rejects: ${c.name}`, () => {
    assert.throws(
      () => fromCmdline(c.line),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError, `got ${String(e)}`);
        assert.ok(e.message.includes(c.key), e.message);
        assert.ok(!e.message.includes('\n'), 'one line');
        return true;
      },
    );
  });
}

test('listen-tls without certificate files is a ConfigError', () => {
  assert.throws(() => fromCmdline('ipa-listen-tls=1'), ConfigError);
});

test('normaliseMac accepts both PXE forms and rejects others', () => {
  assert.equal(normaliseMac('01-52-54-00-12-34-60'), '52:54:00:12:34:60');
  assert.equal(normaliseMac('52:54:00:12:34:60'), '52:54:00:12:34:60');
  assert.equal(normaliseMac('52-54-00-AA-BB-CC'), '52:54:00:aa:bb:cc');
  assert.equal(normaliseMac('52:54:00:12:34'), null);
  assert.equal(normaliseMac('hello'), null);
});

test('flags: --KEY=VALUE, --KEY VALUE, bare boolean, --version', () => {
  const a = parseArgs(['--ipa-api-url=http://127.0.0.1:6385', '--ipa-listen-port', '10000', '--ipa-insecure']);
  assert.equal(a.values.get('ipa-api-url'), 'http://127.0.0.1:6385');
  assert.equal(a.values.get('ipa-listen-port'), '10000');
  assert.equal(a.values.get('ipa-insecure'), '1');
  assert.equal(parseArgs(['--version']).version, true);
  assert.throws(() => parseArgs(['--bogus=1']), ConfigError);
  assert.throws(() => parseArgs(['positional']), ConfigError);
  assert.throws(() => parseArgs(['--ipa-listen-port']), ConfigError);
  // unknown ipa-* flags are ignored like unknown kernel parameters
  assert.equal(parseArgs(['--ipa-unknown=1']).values.size, 0);
});

test('sources: cmdline file < env < flags', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'agent-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'cmdline');
  writeFileSync(file, 'ipa-api-url=http://file:6385 ipa-listen-port=1111 ipa-lookup-timeout=5 BOOTIF=01-52-54-00-00-00-01\n');
  const r = loadConfig(['--cmdline-file', file, '--ipa-listen-port=3333'], {
    env: { IPA_LISTEN_PORT: '2222', IPA_LOOKUP_TIMEOUT: '7', IPA_DEBUG: '1' },
  });
  assert.equal(r.kind, 'run');
  if (r.kind !== 'run') return;
  assert.deepEqual(r.config.apiUrls, ['http://file:6385']);
  assert.equal(r.config.listenPort, 3333);
  assert.equal(r.config.lookupTimeoutS, 7);
  assert.equal(r.config.debug, true);
  assert.equal(r.config.bootif, '52:54:00:00:00:01');
});

test('sources: /proc/cmdline path is read when no --cmdline-file, missing file is a ConfigError', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'agent-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const proc = join(dir, 'proc-cmdline');
  writeFileSync(proc, 'quiet ipa-api-url=http://10.0.2.100:6385\n');
  const r = loadConfig([], { procCmdlinePath: proc, env: {} });
  assert.ok(r.kind === 'run' && r.config.apiUrls[0] === 'http://10.0.2.100:6385');
  assert.throws(() => loadConfig(['--cmdline-file', join(dir, 'nope')], { env: {} }), ConfigError);
  assert.equal(loadConfig(['--version'], { env: {} }).kind, 'version');
});

test('configFromFlags builds a config from a plain object', () => {
  const c = configFromFlags({ 'ipa-standalone': true, 'ipa-listen-port': 12345 });
  assert.equal(c.standalone, true);
  assert.equal(c.listenPort, 12345);
  assert.throws(() => configFromFlags({ 'ipa-listen-port': 'x' }), ConfigError);
});
