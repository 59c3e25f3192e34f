/** iqn, CHAP and QEMU option building of the iscsi deploy; the portal settings the conductor reads from a node. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IQN_RE } from '../../agent/extensions/iscsi.js';
import {
  chapUsername, explainIscsiError, iscsiDisplayUrl, iscsiImageOpts, newChapSecret, newIqn, readBlockSize,
} from '../../conductor/iscsi/initiator.js';
import { DEFAULT_PORTAL_PORT, portalHost, portalPort } from '../../conductor/orchestration/iscsi-deploy.js';

const UUID = '1be26c0b-03f2-4d2e-ae87-c02d7f33c123';
const T = { host: '127.0.0.1', port: 3260, iqn: `iqn.2008-10.org.openstack:${UUID}.0a1b2c3d`, lun: 1, username: 'bmts-1be26c0b' };

test('a fresh iqn per attempt, in the form the agent accepts', () => {
  const a = newIqn(UUID);
  const b = newIqn(UUID);
  assert.match(a, new RegExp(`^iqn\\.2008-10\\.org\\.openstack:${UUID}\\.[0-9a-f]{8}$`));
  assert.notEqual(a, b);
  assert.match(a, IQN_RE);
  for (const bad of ['iqn.2008-10.org.x:a b', 'eui.02004567A425678D', 'iqn.2008-10.org.x:a,b', 'iqn.08-10.org.x']) {
    assert.doesNotMatch(bad, IQN_RE, bad);
  }
});

test('CHAP secrets are random, 32 URL-safe characters; user names carry no secret', () => {
  const s = new Set(Array.from({ length: 50 }, () => newChapSecret()));
  assert.equal(s.size, 50);
  for (const x of s) assert.match(x, /^[A-Za-z0-9_-]{32}$/);
  assert.equal(chapUsername(UUID), 'bmts-1be26c0b');
});

test('image-opts name the secret object, never the password; commas are escaped', () => {
  assert.equal(iscsiImageOpts(T, 'chap0'), `driver=iscsi,transport=tcp,portal=127.0.0.1:3260,target=${T.iqn},lun=1,` +
    'user=bmts-1be26c0b,password-secret=chap0');
  assert.match(iscsiImageOpts({ ...T, username: 'a,b' }, 's'), /user=a,,b,password-secret=s$/);
  assert.match(iscsiImageOpts({ ...T, host: 'fd00::1' }, 's'), /portal=\[fd00::1\]:3260,/);
});

test('the display URL has the user but no secret', () => {
  assert.equal(iscsiDisplayUrl(T), `iscsi://bmts-1be26c0b@127.0.0.1:3260/${T.iqn}/1`);
});

test('libiscsi errors become operator texts; the quoted option string is not taken for an error', () => {
  const opts = `'${iscsiImageOpts(T, 'chap0')}'`;
  assert.match(explainIscsiError(T, `qemu-img: Could not open ${opts}: iSCSI: Failed to connect to LUN : Failed to log in to target. Status: Authentication failure(513)`),
    /^iSCSI login to iscsi:\/\/bmts-1be26c0b@127\.0\.0\.1:3260\/.* was refused \(CHAP authentication failed\)$/);
  assert.match(explainIscsiError(T, `qemu-img: Could not open ${opts}: iSCSI: Failed to connect to LUN : iscsi_service failed with : iscsi_service_reconnect_if_loggedin. Can not reconnect right now.`),
    /^could not reach the iSCSI target iscsi:\/\/bmts-1be26c0b@127\.0\.0\.1:3260\//);
  assert.match(explainIscsiError(T, 'qemu-img: error while writing at byte 0: Input/output error'), /^iSCSI I\/O with .* failed: .*Input\/output error/);
});

test('read-back block size divides the sector-rounded length', () => {
  assert.equal(readBlockSize(48 * 2 ** 20), 2 ** 20);
  assert.equal(readBlockSize(3 * 2 ** 20 + 512 * 4), 2048);
  assert.equal(readBlockSize(512 * 7), 512);
});

test('portal port from driver_info, portal host from the agent URL', () => {
  assert.equal(portalPort({}), DEFAULT_PORTAL_PORT);
  assert.equal(portalPort({ iscsi_portal_port: '3261' }), 3261);
  assert.equal(portalPort({ iscsi_portal_port: 40000 }), 40000);
  for (const bad of [0, 70000, 'x', '12a', 1.5]) {
    assert.throws(() => portalPort({ iscsi_portal_port: bad }), /iscsi_portal_port must be a port number/);
  }
  assert.equal(portalHost('http://127.0.0.1:9999'), '127.0.0.1');
  assert.equal(portalHost('https://[fd00::5]:9999'), 'fd00::5');
  assert.throws(() => portalHost(''), /not a URL/);
});
