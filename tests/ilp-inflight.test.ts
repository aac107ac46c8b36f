/**
 * The in-flight body budget of a real primary (`line.http.max.inflight.size`,
 * `line.http.inflight.wait.timeout`), with the official `@questdb/nodejs-client`, unmodified: a
 * request that finds the budget full is answered 503 INFLIGHT_FULL once its wait is over, the client
 * retries it, and it lands once room comes. The budget is held by a slow sender whose body trickles
 * in, as a client on a slow link would.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sender } from '@questdb/nodejs-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import { getJson, startTestPrimary } from './helpers/test-primary.js';

const BUDGET = 64 * 1024;
const WAIT_MS = 100;

let base = '';
let node: PrimaryNode;

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-inflight-'));
  const store = await FsStore.open({ root: path.join(base, 'store') });
  node = await startTestPrimary(store, path.join(base, 'node'), {
    maxRequestBytes: BUDGET,
    maxInflightBytes: BUDGET,
    inflightWaitMs: WAIT_MS,
  });
});

afterAll(async () => {
  await node?.close();
  await rm(base, { recursive: true, force: true });
});

/** A POST /write whose headers declare `body` whole but whose body is sent only when told. */
async function slowSender(port: number, body: Buffer) {
  const socket: Socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let answer = '';
  socket.on('data', (chunk: Buffer) => {
    answer += chunk.toString();
  });
  socket.write(`POST /write HTTP/1.1\r\nHost: walship\r\nContent-Length: ${body.length}\r\n\r\n`);
  socket.write(body.subarray(0, 100));
  return {
    finish: async (): Promise<string> => {
      socket.write(body.subarray(100));
      while (!/\r\n\r\n/.test(answer)) await new Promise((resolve) => setTimeout(resolve, 5));
      socket.destroy();
      return answer.slice(0, answer.indexOf('\r\n'));
    },
  };
}

async function rowsOf(table: string): Promise<unknown> {
  const { body } = await getJson(
    node.httpPort,
    `/exec?query=${encodeURIComponent(`SELECT count() FROM ${table}`)}`,
  );
  return (body as { dataset: unknown[][] }).dataset[0]![0];
}

describe('the in-flight body budget of a primary', () => {
  it('answers 503 INFLIGHT_FULL while it is full; the official client retries and its rows land', async () => {
    const line = Buffer.from('held a=1i\n');
    // 65 530 bytes: no other request fits beside it.
    const lines = Math.floor(BUDGET / line.length);
    const held = await slowSender(node.httpPort, Buffer.concat(Array(lines).fill(line)));

    // Once the slow request holds the budget, any other body waits WAIT_MS and is refused.
    let refused: Response | undefined;
    for (let tries = 0; refused === undefined && tries < 100; tries++) {
      const response = await fetch(`http://127.0.0.1:${node.httpPort}/write`, {
        method: 'POST',
        body: 'probe a=1i\n',
      });
      if (response.status === 503) refused = response;
      else expect(response.status).toBe(204);
    }
    expect(refused?.status).toBe(503);
    expect(refused!.headers.get('retry-after')).toBe('1');
    const error = (await refused!.json()) as { code: string; message: string };
    expect(error.code).toBe('internal error');
    expect(error.message).toContain('line.http.max.inflight.size');

    // The official client meets the same refusal and retries (within its retry_timeout).
    const sender = await Sender.fromConfig(`http::addr=127.0.0.1:${node.httpPort};retry_timeout=10000;`);
    try {
      await sender.table('retried').intColumn('a', 7).atNow();
      let flushed = false;
      const flushing = sender.flush().then(() => {
        flushed = true;
      });
      // Far longer than the wait: the client's first attempt cannot have been taken.
      await new Promise((resolve) => setTimeout(resolve, 8 * WAIT_MS));
      expect(flushed).toBe(false);
      expect(await held.finish()).toBe('HTTP/1.1 204 No Content');
      await flushing;
    } finally {
      await sender.close();
    }
    expect(await rowsOf('retried')).toBe(1);
    expect(await rowsOf('held')).toBe(lines);
  });
});
