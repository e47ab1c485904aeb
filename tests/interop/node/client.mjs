// A session protocol client written by hand on Node's `ws` package, knowing nothing of
// session-py: it speaks the JSON of docs/protocol.md directly.
//
//   node client.mjs ws://127.0.0.1:PORT/path
//
// It calls `echo`, `add`, `fail` and an unknown method, notifies `ask` (the server then
// calls its `confirm` and `nope` methods, and notifies `confirmed`), reports what it saw
// in a `report` request, and closes with 4000 "node done". It prints one JSON object: every
// text frame it received, verbatim, its answers, and how the connection closed. Exit 0
// means the run completed; the test judges the content.
import WebSocket from "ws";

const url = process.argv[2];
const ws = new WebSocket(url, { perMessageDeflate: false });
const received = []; // every text message, verbatim, in order
const pending = new Map();
const waiters = [];
let nextId = 1;
let welcome = null;
let confirmed = null;

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const fail = (why) => {
  out({ fail: why, received });
  process.exit(1);
};
setTimeout(() => fail("timed out"), 10000).unref();

function request(method, data) {
  const id = nextId++;
  ws.send(JSON.stringify({ type: "request", id, method, data }));
  return new Promise((resolve) => pending.set(id, resolve));
}

function until(predicate) {
  return new Promise((resolve) => {
    if (predicate()) resolve();
    else waiters.push({ predicate, resolve });
  });
}

ws.on("message", (raw, isBinary) => {
  if (isBinary) fail("a binary frame");
  const text = raw.toString("utf8");
  received.push(text);
  const msg = JSON.parse(text);
  if (msg.type === "response" || msg.type === "errorresponse") {
    const resolve = pending.get(msg.id);
    if (!resolve) fail(`an answer to no request of ours: ${text}`);
    pending.delete(msg.id);
    resolve(msg);
  } else if (msg.type === "notification") {
    if (msg.method === "welcome") welcome = msg.data;
    if (msg.method === "confirmed") confirmed = msg.data;
  } else if (msg.type === "request") {
    // The server calls us. `confirm` is ours; anything else is answered as unknown, with
    // the protocol error object docs/protocol.md prescribes ("Answering").
    if (msg.method === "confirm") {
      ws.send(JSON.stringify({ type: "response", id: msg.id, result: `yes from node to ${msg.data}` }));
    } else {
      const error = { code: -32601, message: `method not found: ${msg.method}` };
      ws.send(JSON.stringify({ type: "errorresponse", id: msg.id, error }));
    }
  } else {
    fail(`unknown message type: ${text}`);
  }
  for (const waiter of waiters.splice(0)) {
    if (waiter.predicate()) waiter.resolve();
    else waiters.push(waiter);
  }
});

ws.on("open", async () => {
  const answers = {};
  answers.echo = await request("echo", { x: [1, 2, 3], s: "é" });
  answers.add = await request("add", { a: 2, b: 3 });
  answers.fail = await request("fail", null);
  answers.nope = await request("nope", "x");
  // `data` left undefined: JSON.stringify drops the field; the receiver reads null.
  answers.fail_undefined = await request("fail", undefined);
  ws.send(JSON.stringify({ type: "notification", method: "ask", data: "node" }));
  await until(() => welcome !== null && confirmed !== null);
  // A request, not a notification: its answer tells us the server has it before we close.
  answers.report = await request("report", { from: "node", welcome, confirmed });
  ws.on("close", (code, reason) => {
    out({ received, answers, welcome, confirmed, close: { code, reason: reason.toString() } });
    process.exit(0);
  });
  ws.close(4000, "node done");
});

ws.on("error", (err) => fail(String(err)));
