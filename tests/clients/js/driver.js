// Drives kafkajs for tests/clients/test_kafkajs.py: one command per run, one JSON line out.
//   node driver.js BOOTSTRAP create TOPIC PARTITIONS
//   node driver.js BOOTSTRAP list
//   node driver.js BOOTSTRAP offsets TOPIC
//   node driver.js BOOTSTRAP delete TOPIC
//   node driver.js BOOTSTRAP produce TOPIC COUNT
//   node driver.js BOOTSTRAP consume TOPIC COUNT
//   node driver.js BOOTSTRAP member TOPIC GROUP    (runs until SIGTERM, see below)
//   node driver.js BOOTSTRAP list-groups
//   node driver.js BOOTSTRAP describe-group GROUP
//   node driver.js BOOTSTRAP delete-group GROUP
//   node driver.js BOOTSTRAP fetch-offsets TOPIC GROUP
//   node driver.js BOOTSTRAP reassign TOPIC PARTITION:BROKER
//   node driver.js BOOTSTRAP list-reassignments TOPIC
//   node driver.js BOOTSTRAP transact TOPIC COUNT  (COUNT records committed, then COUNT aborted)
// A secured listener is described by KAFKAJS_SECURITY, JSON: {"ssl": {"ca": PEM file,
// "certificate": PEM file with the client's chain and key (mTLS)}, "sasl": {"mechanism":
// "plain" | "scram-sha-256" | "scram-sha-512", "username", "password"}}, each part optional.
'use strict';
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, command, topic, arg] = process.argv.slice(2);

function security() {
  const { ssl, sasl } = JSON.parse(process.env.KAFKAJS_SECURITY || '{}');
  const options = {};
  if (ssl) {
    options.ssl = { ca: [fs.readFileSync(ssl.ca)] };
    if (ssl.certificate) {
      const pem = fs.readFileSync(ssl.certificate);
      Object.assign(options.ssl, { cert: pem, key: pem });
    }
  }
  if (sasl) options.sasl = sasl;
  return options;
}

const kafka = new Kafka({
  clientId: 'strata-tests',
  brokers: bootstrap.split(','),
  logLevel: logLevel.ERROR,
  retry: { retries: 3 },
  ...security(),
});

async function withAdmin(fn) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

const commands = {
  create: () => withAdmin((a) => a.createTopics({
    topics: [{ topic, numPartitions: Number(arg) }],
    waitForLeaders: true,
  })),
  list: () => withAdmin((a) => a.listTopics()),
  offsets: () => withAdmin((a) => a.fetchTopicOffsets(topic)),
  delete: () => withAdmin((a) => a.deleteTopics({ topics: [topic] })),
  transact: async () => {
    const producer = kafka.producer({
      transactionalId: `js-${process.pid}-${Date.now()}`,
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    try {
      for (const outcome of ['commit', 'abort']) {
        const transaction = await producer.transaction();
        const messages = [];
        for (let i = 0; i < Number(arg); i++) {
          messages.push({ value: `js-${outcome}-${i}`, partition: 0 });
        }
        await transaction.send({ topic, acks: -1, messages });
        await (outcome === 'commit' ? transaction.commit() : transaction.abort());
      }
      return true;
    } finally {
      await producer.disconnect();
    }
  },
  produce: async () => {
    const producer = kafka.producer();
    await producer.connect();
    try {
      // Batches of 100 messages per send; returns every partition's base offsets.
      const results = [];
      for (let start = 0; start < Number(arg); start += 100) {
        const messages = [];
        for (let i = start; i < Math.min(start + 100, Number(arg)); i++) {
          messages.push({ key: `k${i}`, value: `js-${i}`, partition: 0 });
        }
        results.push(...(await producer.send({ topic, acks: -1, messages })));
      }
      return results;
    } finally {
      await producer.disconnect();
    }
  },
  // A group member for tests/clients/test_groups_kafkajs.py: one JSON line per event,
  // {"assigned": [partitions]}, {"record": [partition, offset]} or {"committed": {partition:
  // offset}}; on SIGTERM it leaves the group (committing what it consumed) and exits.
  member: async () => {
    const consumer = kafka.consumer({
      groupId: arg,
      sessionTimeout: 6000,
      heartbeatInterval: 500,
      rebalanceTimeout: 10000,
      // Short fetch long-polls, so that leaving (which waits for the one in flight) is quick.
      maxWaitTimeInMs: 500,
    });
    const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      emit({ assigned: payload.memberAssignment[topic] || [] });
    });
    consumer.on(consumer.events.COMMIT_OFFSETS, ({ payload }) => {
      for (const t of payload.topics) {
        const committed = {};
        for (const p of t.partitions) committed[p.partition] = Number(p.offset);
        emit({ committed });
      }
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        emit({ record: [partition, Number(message.offset)] });
      },
    });
    await new Promise((resolve) => process.once('SIGTERM', resolve));
    await consumer.disconnect();
  },
  'list-groups': () => withAdmin((a) => a.listGroups()),
  'describe-group': () => withAdmin((a) => a.describeGroups([topic])),
  'delete-group': () => withAdmin((a) => a.deleteGroups([topic])),
  'fetch-offsets': () => withAdmin((a) => a.fetchOffsets({ groupId: arg, topics: [topic] })),
  reassign: () => {
    const [partition, broker] = arg.split(':').map(Number);
    return withAdmin((a) => a.alterPartitionReassignments({
      topics: [{ topic, partitionAssignment: [{ partition, replicas: [broker] }] }],
    }));
  },
  'list-reassignments': () => withAdmin((a) => a.listPartitionReassignments({})),
  consume: async () => {
    const consumer = kafka.consumer({ groupId: 'strata-tests' });
    await consumer.connect();
    const values = [];
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await new Promise((resolve) => {
        consumer.run({
          eachMessage: async ({ message }) => {
            values.push(message.value.toString());
            if (values.length >= Number(arg)) resolve();
          },
        });
      });
      return values;
    } finally {
      await consumer.disconnect();
    }
  },
};

if (!commands[command]) {
  console.error(`unknown command ${command}`);
  process.exit(2);
}
commands[command]().then(
  (result) => console.log(JSON.stringify(result === undefined ? null : result)),
  (err) => {
    console.error(err && err.stack ? err.stack : err);
    // An aggregate error (one per partition) names each cause with its Kafka error type.
    for (const cause of (err && err.errors) || []) console.error(`${cause.type}: ${cause.message}`);
    process.exit(1);
  },
);
