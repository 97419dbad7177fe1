// A minimal bridge in the seed report's format (its RedisEventBridge, in JavaScript with ioredis):
// messages {type, data, timestamp, source} on `${keyPrefix}${type}`, self-filter `source === instanceId`.
//
//   node seed-bridge.js publish   URL PREFIX INSTANCE_ID COUNT [TYPES]   publish COUNT events, round robin over TYPES
//   node seed-bridge.js subscribe URL PREFIX INSTANCE_ID SECONDS [TYPES] print what arrived, per source, as JSON
//
// INSTANCE_ID "pid" is process.pid (a number, the seed's default); a number-looking id is sent as a
// number when given as "n:123", as a string otherwise. Every wait is bounded; errors exit 2.
"use strict";
const Redis = require("ioredis");

const [mode, url, prefix, rawId, amount, typesArg] = process.argv.slice(2);
const types = (typesArg || "ticker,trade").split(",");
const instanceId = rawId === "pid" ? process.pid : rawId.startsWith("n:") ? Number(rawId.slice(2)) : rawId;
const opts = { maxRetriesPerRequest: 1, connectTimeout: 3000, enableOfflineQueue: true, lazyConnect: false };

function fail(why) {
  process.stderr.write(`seed-bridge: ${why}\n`);
  process.exit(2);
}

async function publish() {
  const r = new Redis(url, opts);
  r.on("error", (e) => fail(e.message));
  const n = Number(amount);
  for (let k = 0; k < n; k++) {
    const type = types[k % types.length];
    const message = JSON.stringify({ type, data: { symbol: "BTC/USDT", k }, timestamp: Date.now(), source: instanceId });
    await r.publish(`${prefix}${type}`, message);
  }
  await r.quit();
  process.stdout.write(JSON.stringify({ published: n, source: instanceId }) + "\n");
}

async function subscribe() {
  const r = new Redis(url, opts);
  r.on("error", (e) => fail(e.message));
  const bySource = {};
  let self = 0, malformed = 0, received = 0;
  r.on("message", (channel, raw) => {
    let msg;
    try { msg = JSON.parse(raw); } catch (e) { malformed++; return; }
    if (msg === null || typeof msg !== "object" || Array.isArray(msg)) { malformed++; return; }
    if (msg.source === instanceId) { self++; return; }
    received++;
    const key = `${typeof msg.source}:${msg.source}`;
    bySource[key] = (bySource[key] || 0) + 1;
  });
  await r.subscribe(...types.map((t) => `${prefix}${t}`));
  process.stdout.write(JSON.stringify({ subscribed: types.length }) + "\n");
  setTimeout(async () => {
    process.stdout.write(JSON.stringify({ received, self, malformed, bySource }) + "\n");
    await r.quit();
    process.exit(0);
  }, Number(amount) * 1000);
}

(mode === "publish" ? publish() : mode === "subscribe" ? subscribe() : Promise.reject(new Error(`mode ${mode}?`)))
  .catch((e) => fail(e.message));
