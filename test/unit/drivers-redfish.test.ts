import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidParameterValue, MissingParameterValue } from '../../conductor/errors.js';
import { RedfishPower, mapPowerState, parseRedfishInfo } from '../../conductor/drivers/redfish.js';
import { redfishErrorText } from '../../conductor/drivers/redfish-client.js';
import type { DriverNode } from '../../conductor/drivers/types.js';

function node(info: Record<string, unknown>): DriverNode {
  return { uuid: 'n1', driver: 'redfish', driver_info: info, instance_info: {}, driver_internal_info: {}, properties: {}, ports: [] };
}

test('parseRedfishInfo: defaults, scheme, verify_ca forms', () => {
  const i = parseRedfishInfo(node({ redfish_address: 'bmc.example:8443/redfish/v1', redfish_username: 'u' }));
  assert.equal(i.address, 'https://bmc.example:8443');
  assert.equal(i.verifyCa, true);
  assert.equal(i.authType, 'auto');
  assert.equal(i.systemId, undefined);
  assert.equal(parseRedfishInfo(node({ redfish_address: 'http://127.0.0.1:8000', redfish_verify_ca: 'False' })).verifyCa, false);
  assert.throws(() => parseRedfishInfo(node({ redfish_address: 'http://x', redfish_verify_ca: '/etc' })), /redfish_verify_ca must be/);
});

test('validate names every missing and malformed key', () => {
  assert.throws(() => new RedfishPower().validate(node({ redfish_auth_type: 'kerberos' })), (e: unknown) => {
    assert.ok(e instanceof MissingParameterValue);
    assert.match(e.message, /redfish_address/);
    assert.match(e.message, /redfish_auth_type must be one of auto, basic, session/);
    return true;
  });
  assert.throws(() => parseRedfishInfo(node({ redfish_address: 'ftp://x', redfish_verify_ca: '/no/such/ca.pem' })), (e: unknown) => {
    assert.ok(e instanceof InvalidParameterValue);
    assert.match(e.message, /redfish_address must be an http\(s\) URL/);
    assert.match(e.message, /redfish_verify_ca must be a boolean or the path/);
    return true;
  });
});

test('PowerState mapping and Redfish error text', () => {
  assert.equal(mapPowerState('On'), 'power on');
  assert.equal(mapPowerState('PoweringOn'), 'power on');
  assert.equal(mapPowerState('PoweringOff'), 'power off');
  assert.equal(mapPowerState('Off'), 'power off');
  assert.equal(mapPowerState(null), 'error');
  assert.equal(redfishErrorText({ error: { code: 'x', message: 'A general error has occurred.', '@Message.ExtendedInfo': [{ Message: 'Value not in list' }] } }),
    'A general error has occurred. Value not in list');
  assert.equal(redfishErrorText(undefined), '');
});
