#!/usr/bin/env node
// Enqueue a ripen task from Node.js over AMQP, with amqplib (npm).
//
//   npm install   # once, in this folder
//   node enqueue.mjs --type email.send --payload '{"to":"a@b.c"}' --delay-ms 30000
//
// Publishes one envelope (shared/envelope.schema.json) to the ingress exchange
// (<namespace>.ingress) and waits for the dispatcher's reply. Prints the task id
// and exits 0, or prints the reason it was refused and exits 1.
//
// The message_id is what makes a redelivery safe: a dispatcher that dies after
// storing the task but before acking the message gets it again, and recognises
// it by this id. Reuse the same message_id when you retry a publish yourself.
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import amqp from 'amqplib';

const { values: args } = parseArgs({
  options: {
    queue: { type: 'string', default: 'default' },
    type: { type: 'string' },
    payload: { type: 'string', default: 'null' },
    'delay-ms': { type: 'string', default: '0' },
    'idempotency-key': { type: 'string', default: '' },
    'amqp-url': { type: 'string', default: process.env.RIPEN_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/%2f' },
    namespace: { type: 'string', default: process.env.RIPEN_NAMESPACE ?? 'ripen' },
    timeout: { type: 'string', default: '10' },
  },
});

function fail(message) {
  console.error(`enqueue.mjs: ${message}`);
  process.exit(1);
}

if (!args.type) fail('--type is required');
let payload;
try {
  payload = JSON.parse(args.payload);
} catch (err) {
  // One line naming the problem (exit 2, bad input), not a stack trace.
  const shown = args.payload.length <= 40 ? args.payload : `${args.payload.slice(0, 40)}...`;
  console.error(`enqueue.mjs: --payload '${shown}' is not JSON: ${err.message}`);
  process.exit(2);
}
const envelope = { v: 1, queue: args.queue, type: args.type, payload };
if (Number(args['delay-ms']) > 0) envelope.delay_ms = Number(args['delay-ms']);
if (args['idempotency-key']) envelope.idempotency_key = args['idempotency-key'];

const connection = await amqp.connect(args['amqp-url']);
connection.on('error', () => {}); // reported through the channel's errors below
const channel = await connection.createConfirmChannel();
channel.on('error', (err) => fail(`${err.message} (has a ripen dispatcher run in this namespace?)`));
channel.on('return', () => fail('no ingress queue is bound yet: start a ripen dispatcher first'));

// The reply comes by RabbitMQ's direct reply-to, to this channel only (the
// dispatcher answers no other reply_to unless configured: docs/security.md).
const replyQueue = 'amq.rabbitmq.reply-to';
const correlationId = randomUUID();
const timer = setTimeout(() => fail(`no reply within ${args.timeout} s (is a dispatcher running?)`),
  Number(args.timeout) * 1000);

await channel.consume(replyQueue, (msg) => {
  if (msg === null || msg.properties.correlationId !== correlationId) return;
  clearTimeout(timer);
  const reply = JSON.parse(msg.content.toString());
  if (!reply.ok) fail(`refused: ${reply.error}`);
  console.log(reply.id);
  connection.close().finally(() => process.exit(0));
}, { noAck: true });

channel.publish(`${args.namespace}.ingress`, '', Buffer.from(JSON.stringify(envelope)), {
  contentType: 'application/json',
  persistent: true,
  messageId: randomUUID(),
  correlationId,
  replyTo: replyQueue,
  mandatory: true,
});
await channel.waitForConfirms();
