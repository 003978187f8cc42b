// One device, driven through Microsoft's unmodified Node.js device SDK over HTTPS: register with DPS
// (202 + polling handled by the SDK) and send one device-to-cloud message to the assigned hub.
//
// Input: one JSON object on standard input (keys never appear on the command line):
//   {provisioningHost, idScope, registrationId, symmetricKey? | certFile + keyFile?, send?: true,
//    hub?: "host", deviceId?: "id",   (hub + deviceId skip registration and only send)
//    fallbackHub?: "host"}            (a refused registration still sends there, as deviceId or registrationId)
// Output: one JSON line: {registration: {status, assignedHub, deviceId} | null,
//   registrationError: {name, message, statusCode, resultStatus} | null,
//   send: {ok: true} | {ok: false, name, message, statusCode} | null, timings: {registerMs, sendMs}}
// Trust: the emulator's CA comes from NODE_EXTRA_CA_CERTS (set by the caller, devhost/node_device.py).
'use strict';

const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http: ProvisioningHttp } = require('azure-iot-provisioning-device-http');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { X509Security } = require('azure-iot-security-x509');
const { Client, Message } = require('azure-iot-device');
const { Http: DeviceHttp } = require('azure-iot-device-http');
const { NoRetry } = require('azure-iot-common');

function describeError(err) {
  const response = err.response || err.transportObject || (err.result && err.result.response);
  return {
    name: err.name || err.constructor.name,
    message: String(err.message || err),
    statusCode: response && response.statusCode !== undefined ? response.statusCode : null,
    resultStatus: err.result && err.result.status ? err.result.status : null,
  };
}

function security(args) {
  if (args.symmetricKey) {
    return new SymmetricKeySecurityClient(args.registrationId, args.symmetricKey);
  }
  return new X509Security(args.registrationId, x509(args));
}

function x509(args) {
  return { cert: fs.readFileSync(args.certFile, 'utf8'), key: fs.readFileSync(args.keyFile, 'utf8') };
}

async function register(args) {
  const client = ProvisioningDeviceClient.create(
    args.provisioningHost, args.idScope, new ProvisioningHttp(), security(args));
  const result = await client.register();
  return { status: result.status, assignedHub: result.assignedHub, deviceId: result.deviceId };
}

async function send(args, hub, deviceId) {
  let client;
  if (args.symmetricKey) {
    client = Client.fromConnectionString(
      `HostName=${hub};DeviceId=${deviceId};SharedAccessKey=${args.symmetricKey}`, DeviceHttp);
  } else {
    client = Client.fromConnectionString(`HostName=${hub};DeviceId=${deviceId};x509=true`, DeviceHttp);
    client.setOptions(x509(args));
  }
  client.setRetryPolicy(new NoRetry());
  try {
    await client.sendEvent(new Message(JSON.stringify({ from: deviceId, at: Date.now() })));
    return { ok: true };
  } catch (err) {
    return { ok: false, ...describeError(err) };
  } finally {
    await client.close().catch(() => undefined);
  }
}

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on('data', (chunk) => chunks.push(chunk));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

async function main() {
  const args = JSON.parse(await readStdin());
  const out = { registration: null, registrationError: null, send: null, timings: {} };
  let hub = args.hub;
  let deviceId = args.deviceId;
  if (!hub) {
    const started = Date.now();
    try {
      out.registration = await register(args);
      hub = out.registration.assignedHub;
      deviceId = out.registration.deviceId;
    } catch (err) {
      out.registrationError = describeError(err);
      hub = args.fallbackHub;
      deviceId = args.deviceId || args.registrationId;
    }
    out.timings.registerMs = Date.now() - started;
  }
  if (args.send && hub) {
    const started = Date.now();
    out.send = await send(args, hub, deviceId);
    out.timings.sendMs = Date.now() - started;
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ fatal: describeError(err) }) + '\n');
  process.exit(2);
});
