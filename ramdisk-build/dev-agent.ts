/**
 * Stand-in agent used only while agent/main.ts does not exist yet (the build says so loudly and records it in
 * the manifest): it proves the bundle → SEA → initramfs → boot pipeline without the real agent.
 */
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';

const cmdline = (() => {
  try { return readFileSync('/proc/cmdline', 'utf8'); } catch { return ''; }
})();
console.log(`dev-agent: started, cmdline: ${cmdline.trim()}`);
createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ name: 'baremetal-ts dev-agent', url: req.url }));
}).listen(9999, '0.0.0.0', () => console.log('dev-agent: listening on 9999'));
