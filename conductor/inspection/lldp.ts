/**
 * The LLDP TLVs Ironic's local-link-connection hook reads (IEEE 802.1AB): chassis ID (type 1, MAC subtype 4 →
 * switch_id), port ID (type 2 → port_id), system name (type 5 → switch_info). IPA sends each TLV as
 * [type, hex string] in `inventory.interfaces[].lldp` or `plugin_data.lldp_raw[ifname]`.
 */

export interface LocalLinkConnection {
  switch_id?: string;
  port_id?: string;
  switch_info?: string;
}

const TLV_CHASSIS_ID = 1;
const TLV_PORT_ID = 2;
const TLV_SYS_NAME = 5;

function mac(bytes: Buffer): string | undefined {
  return bytes.length === 6 ? [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':') : undefined;
}

function text(bytes: Buffer): string | undefined {
  const s = bytes.toString('utf8').replace(/\0+$/, '');
  return s.length ? s : undefined;
}

function networkAddress(bytes: Buffer): string | undefined {
  // IANA address family 1 = IPv4, 2 = IPv6.
  if (bytes[0] === 1 && bytes.length === 5) return [...bytes.subarray(1)].join('.');
  if (bytes[0] === 2 && bytes.length === 17) {
    const b = bytes.subarray(1);
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
    return groups.join(':');
  }
  return undefined;
}

/** Parses one interface's TLV list; malformed TLVs are skipped (Ironic logs and moves on). */
export function parseLldp(tlvs: unknown): LocalLinkConnection {
  const out: LocalLinkConnection = {};
  if (!Array.isArray(tlvs)) return out;
  for (const tlv of tlvs) {
    if (!Array.isArray(tlv) || tlv.length !== 2) continue;
    const [type, hex] = tlv as [unknown, unknown];
    if (typeof type !== 'number' || typeof hex !== 'string' || !/^([0-9a-f]{2})*$/i.test(hex)) continue;
    const data = Buffer.from(hex, 'hex');
    if (data.length < 1) continue;
    if (type === TLV_CHASSIS_ID && out.switch_id === undefined) {
      if (data[0] === 4) {
        const v = mac(data.subarray(1));
        if (v) out.switch_id = v;
      }
    } else if (type === TLV_PORT_ID && out.port_id === undefined) {
      const sub = data[0];
      const body = data.subarray(1);
      const v = sub === 3 ? mac(body) : sub === 4 ? networkAddress(body) : text(body);
      if (v) out.port_id = v;
    } else if (type === TLV_SYS_NAME && out.switch_info === undefined) {
      const v = text(data);
      if (v) out.switch_info = v;
    }
  }
  return out;
}
