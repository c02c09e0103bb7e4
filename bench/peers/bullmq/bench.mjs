// BullMQ doing what ripen-bench does, so bench/run can set the two side by side.
//
//   node bench.mjs pipeline --tasks N --window-ms W --lead-ms L [--payload-bytes 100]
//                           [--workers 2] [--concurrency 50] [--batch 1000]
//     N delayed jobs due evenly over W ms, starting L ms from now, added with
//     addBulk in batches; worker processes whose processor only records when it
//     started. Lateness = processor start - (job.timestamp + job.delay), the
//     job's due time, on this host's clock (BullMQ stamps both with Date.now()).
//
//   node bench.mjs memory --tasks N [--payload-bytes 100]
//     N delayed jobs due in a year: Redis used_memory before and after, per job.
//
// Redis: --redis-url or $BULLMQ_REDIS_URL (default redis://127.0.0.1:6379/0).
// Prints one line of key=value results on stdout; progress on stderr.
import { fork } from 'node:child_process';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

function options(argv) {
  const o = {
    tasks: 10000, windowMs: 10000, leadMs: 2000, payloadBytes: 100, workers: 2, concurrency: 50, batch: 1000,
    keepCompletedS: 3600,
    redisUrl: process.env.BULLMQ_REDIS_URL || 'redis://127.0.0.1:6379/0', queue: `bench-${process.pid}`,
  };
  const names = {
    '--tasks': 'tasks', '--window-ms': 'windowMs', '--lead-ms': 'leadMs', '--payload-bytes': 'payloadBytes',
    '--workers': 'workers', '--concurrency': 'concurrency', '--batch': 'batch', '--redis-url': 'redisUrl',
    '--queue': 'queue', '--keep-completed-s': 'keepCompletedS',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || i + 1 >= argv.length) throw new Error(`unknown or incomplete option '${argv[i]}'`);
    o[key] = typeof o[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
    if (typeof o[key] === 'number' && !Number.isFinite(o[key])) throw new Error(`${argv[i]}: not a number`);
  }
  return o;
}

// What is kept of a completed job: by default, like ripen (a record readable for
// record_retention, an hour), BullMQ keeps completed jobs for --keep-completed-s;
// 0 keeps none.
function removal(o) {
  return o.keepCompletedS > 0 ? { age: o.keepCompletedS } : true;
}

function connection(url) {
  // maxRetriesPerRequest: null is what BullMQ workers require.
  return new IORedis(url, { maxRetriesPerRequest: null, enableAutoPipelining: false });
}

async function usedMemory(redis) {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)[1]);
}

function quantile(sorted, q) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

// ---- worker child: process jobs, send back start stamps -----------------------

async function workerChild(o) {
  const starts = [];  // [lateness_ms, start_ms]
  let lastEnd = 0;
  const worker = new Worker(o.queue, async (job) => {
    const now = Date.now();
    starts.push(now - (job.timestamp + (job.opts.delay || 0)), now);
    lastEnd = Date.now();
  }, { connection: connection(o.redisUrl), concurrency: o.concurrency, autorun: true });
  await worker.waitUntilReady();
  process.send({ ready: true });
  process.on('message', async (m) => {
    if (m.stop) {
      await worker.close();
      // send() is asynchronous: exit only once the results are handed over.
      process.send({ starts, lastEnd }, () => process.exit(0));
    }
  });
}

// ---- pipeline: enqueue, wait for every job to run ------------------------------

async function pipeline(o) {
  const redis = connection(o.redisUrl);
  const queue = new Queue(o.queue, { connection: redis });
  await queue.obliterate({ force: true }).catch(() => {});
  const children = [];
  for (let i = 0; i < o.workers; i++) {
    const child = fork(new URL(import.meta.url).pathname, ['worker-child', ...process.argv.slice(3), '--queue', o.queue]);
    children.push(child);
  }
  await Promise.all(children.map((c) => new Promise((resolve) => c.once('message', resolve))));

  const payload = 'x'.repeat(o.payloadBytes);
  const start = Date.now();
  const firstDue = start + o.leadMs;
  const dueOf = (i) => (o.tasks > 1 ? firstDue + Math.floor((o.windowMs * i) / (o.tasks - 1)) : firstDue);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < o.tasks; i += o.batch) {
    const jobs = [];
    const now = Date.now();
    for (let k = i; k < Math.min(o.tasks, i + o.batch); k++) {
      jobs.push({ name: 'bench', data: { p: payload }, opts: { delay: Math.max(0, dueOf(k) - now), removeOnComplete: removal(o) } });
    }
    await queue.addBulk(jobs);
  }
  const enqueueS = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stderr.write(`bullmq: enqueued ${o.tasks} jobs in ${enqueueS.toFixed(3)} s\n`);

  // Wait until every job ran: BullMQ's own completed count (removed on completion).
  const deadline = Date.now() + o.leadMs + o.windowMs + 120000;
  for (;;) {
    const counts = await queue.getJobCounts('delayed', 'wait', 'active', 'prioritized');
    const left = counts.delayed + counts.wait + counts.active + counts.prioritized;
    if (left === 0 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const results = await Promise.all(children.map((c) => new Promise((resolve) => {
    c.once('message', resolve);
    c.send({ stop: true });
  })));
  const lateness = [];
  let lastStart = 0, lastEnd = 0;
  for (const r of results) {
    for (let i = 0; i < r.starts.length; i += 2) {
      lateness.push(r.starts[i]);
      lastStart = Math.max(lastStart, r.starts[i + 1]);
    }
    lastEnd = Math.max(lastEnd, r.lastEnd);
  }
  lateness.sort((a, b) => a - b);
  const completed = lateness.length;
  const completionRate = completed / Math.max(1e-9, (lastEnd - firstDue) / 1000);
  const early = lateness.filter((x) => x < 0).length;
  console.log([
    'bullmq-pipeline', `tasks=${o.tasks}`, `window_ms=${o.windowMs}`, `workers=${o.workers}`, `concurrency=${o.concurrency}`,
    `keep_completed_s=${o.keepCompletedS}`,
    `enqueue_rate=${(o.tasks / enqueueS).toFixed(0)}`, `completed=${completed}`, `completion_rate=${completionRate.toFixed(0)}`,
    `p50_ms=${quantile(lateness, 0.5)}`, `p99_ms=${quantile(lateness, 0.99)}`, `p999_ms=${quantile(lateness, 0.999)}`,
    `max_ms=${lateness.length ? lateness[lateness.length - 1] : 0}`, `early=${early}`,
    `drain_ms=${lastStart - dueOf(o.tasks - 1)}`,
  ].join(' '));
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  redis.disconnect();
}

// ---- memory: bytes per pending delayed job ----------------------------------------

async function memory(o) {
  const redis = connection(o.redisUrl);
  const queue = new Queue(o.queue, { connection: redis });
  await queue.obliterate({ force: true }).catch(() => {});
  const payload = 'x'.repeat(o.payloadBytes);
  const before = await usedMemory(redis);
  const yearMs = 365 * 24 * 3600 * 1000;
  for (let i = 0; i < o.tasks; i += o.batch) {
    const jobs = [];
    for (let k = i; k < Math.min(o.tasks, i + o.batch); k++) {
      // Default options: the smallest job BullMQ stores (these never complete here).
      jobs.push({ name: 'bench', data: o.payloadBytes > 0 ? { p: payload } : {}, opts: { delay: yearMs + k } });
    }
    await queue.addBulk(jobs);
  }
  const after = await usedMemory(redis);
  console.log(`bullmq-memory tasks=${o.tasks} payload_bytes=${o.payloadBytes} bytes_per_task=${((after - before) / o.tasks).toFixed(1)}`);
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  redis.disconnect();
}

const [mode, ...rest] = process.argv.slice(2);
try {
  const o = options(rest);
  if (mode === 'pipeline') await pipeline(o);
  else if (mode === 'memory') await memory(o);
  else if (mode === 'worker-child') await workerChild(o);
  else throw new Error("usage: node bench.mjs pipeline|memory [options] (see the top of this file)");
  if (mode !== 'worker-child') process.exit(0);
} catch (e) {
  process.stderr.write(`bench.mjs: ${e.message}\n`);
  process.exit(1);
}
