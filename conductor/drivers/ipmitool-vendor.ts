/**
 * The `ipmitool` vendor interface, with Ironic's two passthru methods: `send_raw` (ipmitool raw <bytes>) and
 * `bmc_reset` (ipmitool bmc reset warm|cold). Both are async POSTs under the exclusive lock, as in Ironic; the
 * outcome is logged, and a failure also lands in the node's last_error.
 */
import { getLogger } from '../../common/logger.js';
import { DriverOperationError, InvalidParameterValue } from '../errors.js';
import { DEFAULT_IPMITOOL_OPTIONS, IPMI_PROPERTIES, IpmiCommandFailure, parseIpmiInfo, runIpmitool,
  type IpmitoolOptions } from './ipmitool.js';
import { VendorInterface, vendorArg } from './vendor.js';

const log = getLogger('ipmitool-vendor');
/** Bytes as ipmitool raw takes them: 0xNN or NN, 2 to 64 of them (netfn, cmd, data). */
const RAW_BYTE = /^(0x)?[0-9a-f]{1,2}$/i;

export function parseRawBytes(raw: string): string[] {
  const bytes = raw.trim().split(/\s+/).filter(Boolean);
  if (bytes.length < 2 || bytes.length > 64 || !bytes.every((b) => RAW_BYTE.test(b))) {
    throw new InvalidParameterValue(`Invalid raw bytes "${raw}": expected 2 to 64 space-separated hex bytes such as "0x06 0x01".`);
  }
  return bytes;
}

export function createIpmitoolVendor(opts: Partial<IpmitoolOptions> = {}): VendorInterface {
  const o = { ...DEFAULT_IPMITOOL_OPTIONS, ...opts };
  const fail = (what: string, uuid: string, e: unknown): Error =>
    e instanceof IpmiCommandFailure ? new DriverOperationError(`${what} on node ${uuid} failed: ${e.message}`, e) : e as Error;
  return new VendorInterface('ipmitool', IPMI_PROPERTIES, (node) => { parseIpmiInfo(node); }).addMethods({
    node: {
      send_raw: {
        description: 'Send raw bytes to the BMC. Required argument: "raw_bytes" - a string of raw bytes (e.g. "0x00 0x01").',
        validate(_node, call) { parseRawBytes(vendorArg(call, 'raw_bytes', 'string', true) as string); },
        async run(task, call) {
          const bytes = parseRawBytes(vendorArg(call, 'raw_bytes', 'string', true) as string);
          try {
            const out = await runIpmitool(parseIpmiInfo(task.driverNode()), ['raw', ...bytes], o);
            log.info({ node: task.node.uuid, bytes: bytes.join(' '), response: out.trim() }, 'send raw bytes done');
            return out.trim();
          } catch (e) {
            throw fail(`IPMI send raw bytes "${bytes.join(' ')}"`, task.node.uuid, e);
          }
        },
      },
      bmc_reset: {
        description: 'Reset the BMC. Optional argument: "warm" (boolean, default true; false does a cold reset).',
        validate(_node, call) { vendorArg(call, 'warm', 'boolean', false); },
        async run(task, call) {
          const warm = vendorArg(call, 'warm', 'boolean', false) ?? true;
          try {
            await runIpmitool(parseIpmiInfo(task.driverNode()), ['bmc', 'reset', warm ? 'warm' : 'cold'], o);
            log.info({ node: task.node.uuid, warm }, 'BMC reset done');
          } catch (e) {
            throw fail(`IPMI BMC ${warm ? 'warm' : 'cold'} reset`, task.node.uuid, e);
          }
        },
      },
    },
  });
}
